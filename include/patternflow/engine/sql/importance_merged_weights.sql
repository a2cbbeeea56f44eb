-- The partial sums per (merchant, customer) of the batches read so far (the Arrow table
-- `partials`: the sums so far, then one batch's, `importance_batch_weights.sql`) added up: one
-- row a pair, so memory follows the number of pairs, not the size of the file.
SELECT
    merchant,
    customer,
    sum(weight_cents)::HUGEINT  AS weight_cents,
    sum(weight_rows)::BIGINT    AS weight_rows
FROM partials
GROUP BY merchant, customer
