"""patternflow: detect customer patterns in a bank transaction stream as its chunks land on S3.

The package is laid out by the stages the data passes through, each layer importing only
those below it (``make lint`` enforces this with import-linter):

- ``ingest``: reading input files: the CSV contract, parsing, chunking, synthetic BankSim data.
- ``engine``: state and patterns over Arrow tables, DuckDB and a small object-store interface.
- ``pipeline``: the streaming job on S3 and Airflow: producer, detector, settings, layout.
- ``web``: the "Pattern detections" page and the static report, read from the stream's objects.
- ``local``: running it all on one machine: the launcher and its native services.

``cli`` (the ``patternflow`` command), ``replay`` (the engine offline over local files),
``console`` (the command's terminal output) and ``errors`` (the exceptions every layer shares)
sit at the top.
"""

__version__ = "0.1.0"
