-- Fold one chunk into the aggregate state: what the chunk (the Arrow table `chunk`: dense pair
-- id, amount, gender of each transaction) adds to each (merchant, customer) pair it touches.
-- The engine adds these rows into its per-pair columns by pair id; amounts in exact integer cents.
SELECT
    pair,
    count(*)                                                               AS n,
    sum(CAST(amount * 100 AS BIGINT))::BIGINT                              AS cents,
    bit_or(CASE gender WHEN 'F' THEN 1 WHEN 'M' THEN 2 ELSE 4 END)::UTINYINT AS genders
FROM chunk
GROUP BY pair
