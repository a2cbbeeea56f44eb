-- Fold one chunk into the aggregate state: what the chunk adds to each (merchant, customer) pair
-- it touches. `chunk` (Arrow) holds each transaction's dense pair id, its amount in exact integer
-- cents and its gender as a bit (F 1, M 2, anything else 4); the engine adds the rows returned
-- into its per-pair columns by pair id.
SELECT pair, count(*) AS n, sum(cents)::BIGINT AS cents, bit_or(gender)::UTINYINT AS genders
FROM chunk
GROUP BY pair
