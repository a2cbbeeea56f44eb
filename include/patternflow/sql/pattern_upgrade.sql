-- PatId1 UPGRADE: at a merchant with more than upgrade_min_merchant_transactions transactions,
-- customers with n(c, m) >= P90 of the merchant's counts and a defined weight(c, m) <= W10 of
-- the merchant's defined weights (both quantile_cont, i.e. linear interpolation). `customers`
-- (Arrow) holds the pairs with n >= 1 of the merchants over the threshold; weight_rank is the
-- exact rank of weight(c, m) among the merchant's weights, -1 when it is undefined.
--
-- Exact without interpolating: with sorted values x_1 <= ... <= x_N and h = (N - 1) * q,
--   v >= quantile_cont(q)  <=>  v >= x_(ceil(h) + 1)    (no value lies strictly between
--   v <= quantile_cont(q)  <=>  v <= x_(floor(h) + 1)    x_(floor(h) + 1) and x_(ceil(h) + 1))
-- h is computed in DECIMAL; weights are compared by rank, which orders them exactly.
WITH eligible AS (
    SELECT merchant, customer, n, weight_rank
    FROM customers
    WHERE n >= 1
      AND merchant IN (
          SELECT merchant FROM merchants WHERE total > getvariable('upgrade_min_merchant_transactions')
      )
),
thresholds AS (
    SELECT
        merchant,
        list_sort(list(n))[ceil((count(*) - 1) * getvariable('upgrade_count_quantile'))::BIGINT + 1] AS p90_n,
        list_sort(list(weight_rank) FILTER (WHERE weight_rank >= 0))
            [floor((count(*) FILTER (WHERE weight_rank >= 0) - 1) * getvariable('upgrade_weight_quantile'))::BIGINT + 1] AS w10_rank
    FROM eligible
    GROUP BY merchant
)
SELECT 'PatId1' AS pattern_id, 'UPGRADE' AS action_type, e.customer, e.merchant
FROM eligible AS e
JOIN thresholds AS t USING (merchant)
WHERE e.n >= t.p90_n
  AND e.weight_rank >= 0
  AND e.weight_rank <= t.w10_rank
