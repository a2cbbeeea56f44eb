-- The engine's one DuckDB table: every detection key ever emitted, by dense id (customer -1 is
-- "no customer", DEI-NEEDED's empty customerName). The aggregates themselves are numpy columns
-- kept by the engine (see aggregates.py), handed to the queries as Arrow tables.
CREATE TABLE emitted (
    pattern_id  VARCHAR NOT NULL,
    action_type VARCHAR NOT NULL,
    customer    INTEGER NOT NULL,
    merchant    INTEGER NOT NULL
);
