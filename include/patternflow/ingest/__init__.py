"""Reading input: the transaction and CustomerImportance files, as the data contract defines them.

Holds the column contract (``schema``, ``columns``), the parser with its errors naming file,
row and field (``parsing``, ``stringbytes``), the byte-exact cutting of the file into chunks
(``chunking``), and the synthetic BankSim files (``banksim``, ``generate``).

May import: the standard library, numpy, pyarrow and ``patternflow.errors``. Nothing else of
the package: every later stage builds on this one.
"""
