-- PatId3 DEI-NEEDED: a customer has a clear gender at a merchant when all of their transactions
-- there carry F (genders = 1) or all carry M (genders = 2). The merchant qualifies when its
-- clear-female customers are fewer than its clear-male ones and more than dei_min_female_customers.
SELECT 'PatId3' AS pattern_id, 'DEI-NEEDED' AS action_type, '' AS customer, merchant
FROM pairs
GROUP BY merchant
HAVING count(*) FILTER (WHERE genders = 1) < count(*) FILTER (WHERE genders = 2)
   AND count(*) FILTER (WHERE genders = 1) > getvariable('dei_min_female_customers')
