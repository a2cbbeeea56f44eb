-- Fold one parsed chunk (the Arrow table `chunk`) into the per (merchant, customer) aggregates.
-- A pair met for the first time that CustomerImportance does not know gets no weight.
INSERT INTO pairs
SELECT
    merchant,
    customer,
    count(*)    AS n,
    sum(amount) AS amount_sum,
    bit_or(CASE gender WHEN 'F' THEN 1 WHEN 'M' THEN 2 ELSE 4 END)::UTINYINT AS genders,
    NULL        AS weight_sum,
    NULL        AS weight_rows
FROM chunk
GROUP BY merchant, customer
ON CONFLICT (merchant, customer) DO UPDATE SET
    n = n + excluded.n,
    amount_sum = amount_sum + excluded.amount_sum,
    genders = genders | excluded.genders
