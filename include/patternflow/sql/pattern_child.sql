-- PatId2 CHILD: n(c, m) >= child_min_transactions and avg_amount(c, m) < child_max_average_amount,
-- compared exactly as cents < 100 * threshold * n (integers and DECIMAL, no division). Only pairs
-- the chunk touched (the Arrow table `touched`) can newly qualify: the others did not change.
SELECT 'PatId2' AS pattern_id, 'CHILD' AS action_type, customer, merchant
FROM touched
WHERE n >= getvariable('child_min_transactions')
  AND cents < getvariable('child_max_average_amount') * 100 * n
