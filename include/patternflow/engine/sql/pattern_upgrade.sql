-- PatId1 UPGRADE: at a merchant with more than upgrade_min_merchant_transactions transactions,
-- customers with n(c, m) >= P90 of the merchant's counts and a defined weight(c, m) <= W10 of
-- the merchant's defined weights (both quantile_cont, i.e. linear interpolation, over the
-- customers with n >= 1).
--
-- The thresholds come as exact order statistics, kept up to date by the engine as chunks are
-- folded (patternflow.engine.aggregates), on each row of `candidates` (Arrow) beside the pair's own
-- values: merchant_p90_n is the least count that is >= P90, merchant_w10_rank the greatest
-- weight rank that is <= W10, weight_rank being the exact rank of weight(c, m) among the
-- merchant's weights (from 1; -1 when undefined). `candidates` holds every pair that can newly
-- qualify, among them each pair whose rank is within W10.
SELECT 'PatId1' AS pattern_id, 'UPGRADE' AS action_type, customer, merchant
FROM candidates
WHERE merchant_total > upgrade_min_merchant_transactions()
  AND n >= 1
  AND n >= merchant_p90_n
  AND weight_rank >= 1
  AND weight_rank <= merchant_w10_rank
