"""Running it all on one machine: ``make run`` and ``make run-distributed``.

Holds the launcher (``launcher``: the embedded S3 server, Airflow standalone or its Celery
topology, the live progress line) and the native PostgreSQL and Redis it starts (``services``).

May import: every stage below it except ``web``, which it serves only through Airflow. It
starts Airflow as separate processes and never imports it.
"""
