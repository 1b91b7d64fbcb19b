"""Operations helpers: start the real ``dagster dev``, talk to it through GraphQL, take a
screenshot of the lineage page, start a throw-away PostgreSQL, compare warehouse tables.

Used by the operations tests (``launch_pipeline_tests/test_ops_*.py``) and by operators (see
``docs/operations.md``). Nothing here is imported by the code location itself."""
