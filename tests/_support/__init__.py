"""Development aids that are not part of the installed provider: the local Airflow deployment behind
``make airflow`` and the deployment tests, a latency-injecting DB-API proxy for tests and benchmarks,
and the demo warehouse table. Importable from the repository root (tests, scripts, benchmarks)."""
