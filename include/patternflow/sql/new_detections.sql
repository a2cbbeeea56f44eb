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
WHERE NOT EXISTS (
    SELECT 1
    FROM emitted AS e
    WHERE e.pattern_id = d.pattern_id AND e.customer = d.customer AND e.merchant = d.merchant
)
RETURNING pattern_id, action_type, customer, merchant
