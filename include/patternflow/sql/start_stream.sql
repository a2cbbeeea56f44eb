-- The starting state of a stream: weight(c, m) from the CustomerImportance rows of each
-- (customer, merchant), all typeTrans together; no transactions yet.
INSERT INTO pairs
SELECT
    Target            AS merchant,
    Source            AS customer,
    0                 AS n,
    0                 AS amount_sum,
    0                 AS genders,
    sum(Weight)       AS weight_sum,
    count(*)          AS weight_rows
FROM importance
GROUP BY Target, Source
