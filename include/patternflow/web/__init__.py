"""What people see of the stream: the "Pattern detections" page and ``patternflow report``.

Holds the stream's view built from its objects (``stream_view``), its HTML and charts
(``view_html``, ``charts``), the FastAPI app the Airflow plugin mounts (``dashboard``), the static
report (``report``), and the page's own files (``assets/``).

May import: ``patternflow.pipeline`` (settings, layout, status), ``patternflow.engine`` and
``patternflow.ingest``. Never Airflow (the plugin in ``plugins/`` wires the app into it) nor
``patternflow.local``.
"""
