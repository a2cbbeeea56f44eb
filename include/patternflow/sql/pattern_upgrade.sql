-- PatId1 UPGRADE: at a merchant with more than upgrade_min_merchant_transactions transactions,
-- customers with n(c, m) >= P90 of the merchant's counts and a defined weight(c, m) <= W10 of
-- the merchant's defined weights (both quantile_cont, i.e. linear interpolation).
--
-- Exact without interpolating: with sorted values x_1 <= ... <= x_N and h = (N - 1) * q,
--   v >= quantile_cont(q)  <=>  v >= x_(ceil(h) + 1)    (no value lies strictly between
--   v <= quantile_cont(q)  <=>  v <= x_(floor(h) + 1)    x_(floor(h) + 1) and x_(ceil(h) + 1))
-- h is computed in DECIMAL; weights are fractions weight_sum / weight_rows, compared by
-- cross-multiplication.
WITH merchants AS (
    SELECT merchant
    FROM pairs
    GROUP BY merchant
    HAVING sum(n) > getvariable('upgrade_min_merchant_transactions')
),
customers AS (
    SELECT merchant, customer, n, weight_sum, weight_rows
    FROM pairs
    WHERE n >= 1 AND merchant IN (SELECT merchant FROM merchants)
),
thresholds AS (
    SELECT
        merchant,
        list_sort(list(n))[ceil((count(*) - 1) * getvariable('upgrade_count_quantile'))::BIGINT + 1] AS p90_n,
        list(struct_pack(weight_sum := weight_sum, weight_rows := weight_rows) ORDER BY weight_sum / weight_rows)
            FILTER (WHERE weight_rows IS NOT NULL)
            [floor((count(weight_rows) - 1) * getvariable('upgrade_weight_quantile'))::BIGINT + 1] AS w10
    FROM customers
    GROUP BY merchant
)
SELECT 'PatId1' AS pattern_id, 'UPGRADE' AS action_type, c.customer, c.merchant
FROM customers AS c
JOIN thresholds AS t USING (merchant)
WHERE c.n >= t.p90_n
  AND c.weight_rows IS NOT NULL
  AND c.weight_sum * t.w10.weight_rows <= t.w10.weight_sum * c.weight_rows
