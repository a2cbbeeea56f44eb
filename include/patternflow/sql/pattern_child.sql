-- PatId2 CHILD: n(c, m) >= child_min_transactions and avg_amount(c, m) < child_max_average_amount,
-- compared exactly as amount_sum < threshold * n (DECIMAL, no division).
SELECT 'PatId2' AS pattern_id, 'CHILD' AS action_type, customer, merchant
FROM pairs
WHERE n >= getvariable('child_min_transactions')
  AND amount_sum < getvariable('child_max_average_amount') * n
