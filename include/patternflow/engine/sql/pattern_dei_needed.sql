-- PatId3 DEI-NEEDED: a customer has a clear gender at a merchant when all of their transactions
-- there carry F or all carry M. The merchant qualifies when its clear-female customers are fewer
-- than its clear-male ones and more than dei_min_female_customers. `merchants` (Arrow) carries
-- the counts, which the engine keeps up to date pair by pair as chunks are folded.
SELECT 'PatId3' AS pattern_id, 'DEI-NEEDED' AS action_type, -1 AS customer, merchant
FROM merchants
WHERE clear_female < clear_male
  AND clear_female > dei_min_female_customers()
