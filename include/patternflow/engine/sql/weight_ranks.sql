-- The starting state of a stream: one row per (merchant, customer) of CustomerImportance, with
-- the rank of its weight among the merchant's weights; no transactions yet. It reads the sums per
-- pair (`weights`: `importance_weights.sql`), whose smallest `low` is the smallest weight of all
-- rows in cents.
--
-- weight(c, m) = weight_cents / weight_rows is a fraction; it is only ever compared with the
-- weights of the same merchant (UPGRADE's W10), so the state keeps its dense rank instead. The
-- ranks are exact: with the weights shifted to be non-negative, key = floor(shifted * S / rows)
-- for S = (largest weight_rows)^2 gives equal keys to equal fractions, and distinct fractions
-- differ by at least 1 / (rows1 * rows2) >= 1 / S, hence keys at least 1 apart, in order.
WITH bounds AS (
    SELECT
        (SELECT min(low)::HUGEINT FROM weights)                                     AS least,
        (SELECT max(weight_rows)::HUGEINT * max(weight_rows)::HUGEINT FROM weights)  AS scale
)
SELECT
    merchant,
    customer,
    dense_rank() OVER (
        PARTITION BY merchant
        ORDER BY (weight_cents - least * weight_rows) * scale // weight_rows
    )::INTEGER AS weight_rank
FROM weights, bounds
ORDER BY merchant, customer  -- ids are given in this order: the same on any number of threads
