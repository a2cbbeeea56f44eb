-- Detections that qualify now and were never emitted: the three patterns' rows less the keys in
-- `emitted` (Arrow: the detection keys emitted so far, by dense id, of every pair in `candidates`
-- and of every merchant; customer -1 is "no customer", DEI-NEEDED's empty customerName). The
-- engine records the rows returned as emitted and orders them by (pattern_id, merchant, customer).
SELECT d.pattern_id, d.action_type, d.customer, d.merchant
FROM (
    SELECT * FROM pattern_upgrade
    UNION ALL
    SELECT * FROM pattern_child
    UNION ALL
    SELECT * FROM pattern_dei_needed
) AS d
ANTI JOIN emitted AS e USING (pattern_id, customer, merchant)
