"""patternflow: detect customer patterns in a bank transaction stream as its chunks land on S3.

The core of this package (parsing, state, patterns, detection files) is plain Python over
Arrow tables and DuckDB; only ``patternflow.airflow`` knows about Airflow.
"""

__version__ = "0.1.0"
