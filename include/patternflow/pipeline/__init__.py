"""The streaming job: Mechanism X (``producer``) and Mechanism Y (``detector``) on S3 and Airflow.

Holds the settings and where each object lives (``settings``, ``layout``), the S3 store and
input sources (``s3``, ``sources``), the stream's progress as the objects tell it (``status``),
and what the DAG files need from Airflow (``orchestration``, the only module of the package
that imports Airflow).

May import: ``patternflow.ingest``, ``patternflow.engine``, ``patternflow.errors``, boto3 and
Airflow. Never ``web`` or ``local``.
"""
