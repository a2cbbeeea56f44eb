"""State and patterns: folding chunks into aggregates and emitting each detection once.

Holds the engine (``detection_engine`` with its SQL in ``sql/``, one query a file), the
aggregates it keeps (``aggregates``, ``ids``, ``hash_index``, ``fenwick``, ``emitted_keys``),
detection rows and 50-row files (``detections``), the thresholds (``config``), the IST clock
(``clock``), the versioned state (``state``) over a small object-store interface (``store``),
and one chunk's step through all of it (``stream``).

May import: ``patternflow.ingest`` and ``patternflow.errors``, DuckDB and Arrow. Never S3 (boto3),
Airflow, or the ``pipeline``, ``web`` and ``local`` stages: a store is whatever implements
``store.ObjectStore``.
"""
