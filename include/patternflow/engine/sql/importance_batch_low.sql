-- The smallest weight of one batch of CustomerImportance rows (the Arrow table `importance`), in
-- integer cents (NULL for no rows): the smallest of all batches shifts every weight to be
-- non-negative in `weight_ranks.sql`.
SELECT min(CAST(Weight * 100 AS BIGINT))::HUGEINT AS low
FROM importance
