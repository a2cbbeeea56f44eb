-- Detections that qualify now and were never emitted: record them as emitted and return them.
-- The caller orders them by (pattern_id, merchant, customer).
INSERT INTO emitted
SELECT d.pattern_id, d.action_type, d.customer, d.merchant
FROM (
    SELECT * FROM pattern_upgrade
    UNION ALL
    SELECT * FROM pattern_child
    UNION ALL
    SELECT * FROM pattern_dei_needed
) AS d
ANTI JOIN emitted AS e USING (pattern_id, customer, merchant)
RETURNING pattern_id, action_type, customer, merchant
