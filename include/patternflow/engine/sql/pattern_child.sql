-- PatId2 CHILD: n(c, m) >= child_min_transactions and avg_amount(c, m) < child_max_average_amount,
-- compared exactly as cents < 100 * threshold * n (integers and DECIMAL, no division). `candidates`
-- (Arrow) holds every pair that can newly qualify: a pair whose values the chunk did not change
-- qualified (and was emitted) before or does not now.
SELECT 'PatId2' AS pattern_id, 'CHILD' AS action_type, customer, merchant
FROM candidates
WHERE n >= child_min_transactions()
  AND cents < child_max_average_amount() * 100 * n
