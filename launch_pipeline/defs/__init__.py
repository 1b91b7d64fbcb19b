"""Dagster wiring: assets, checks, resources, jobs and schedules. Logic lives in the plain
modules one level up (``raw_io``, ``cleaning``, ``quality``, ``features``, ``shop_data``,
``planning``, ``report``); these modules only call them and describe the results."""
