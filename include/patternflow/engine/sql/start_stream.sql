-- The starting state of a stream: one row per (merchant, customer) of CustomerImportance (the
-- Arrow table `importance`), all typeTrans together, with the rank of its weight among the
-- merchant's weights; no transactions yet.
--
-- weight(c, m) = weight_cents / weight_rows is a fraction; it is only ever compared with the
-- weights of the same merchant (UPGRADE's W10), so the state keeps its dense rank instead. The
-- ranks are exact: with the weights shifted to be non-negative, key = floor(shifted * S / rows)
-- for S = (largest weight_rows)^2 gives equal keys to equal fractions, and distinct fractions
-- differ by at least 1 / (rows1 * rows2) >= 1 / S, hence keys at least 1 apart, in order.
WITH weights AS (
    SELECT
        Target                                      AS merchant,
        Source                                      AS customer,
        sum(CAST(Weight * 100 AS BIGINT))::HUGEINT   AS weight_cents,
        count(*)                                    AS weight_rows
    FROM importance
    GROUP BY Target, Source
),
bounds AS (
    SELECT
        min(CAST(Weight * 100 AS BIGINT))::HUGEINT                                  AS low,
        (SELECT max(weight_rows)::HUGEINT * max(weight_rows)::HUGEINT FROM weights)  AS scale
    FROM importance
)
SELECT
    merchant,
    customer,
    dense_rank() OVER (
        PARTITION BY merchant
        ORDER BY (weight_cents - low * weight_rows) * scale // weight_rows
    )::INTEGER AS weight_rank
FROM weights, bounds
ORDER BY merchant, customer  -- ids are given in this order: the same on any number of threads
