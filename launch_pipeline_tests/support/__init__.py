"""Test and operations tooling (not part of the code location): start the real ``dagster dev``,
talk to it through GraphQL, take a screenshot of the lineage page, start a throw-away
PostgreSQL, compare warehouse tables, make tiny shops.

Used by the operations tests (``launch_pipeline_tests/test_ops_*.py``) and by operators (see
``docs/operations.md``), e.g. ``python -m launch_pipeline_tests.support.screenshot`` from the
repository root. Kept out of ``launch_pipeline`` so the runtime package holds only what the
pipeline runs (and so "ops" does not read as Dagster ops)."""
