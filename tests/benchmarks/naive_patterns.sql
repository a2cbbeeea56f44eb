-- The naive baseline: every pattern recomputed from all raw history (table `history`).
WITH pairs AS (
    SELECT merchant, customer, count(*) AS n, avg(amount) AS avg_amount,
           CASE WHEN min(gender) = max(gender) AND min(gender) IN ('F', 'M') THEN min(gender) END AS clear_gender
    FROM history GROUP BY merchant, customer
),
weights AS (SELECT Target AS merchant, Source AS customer, avg(Weight) AS weight FROM importance GROUP BY ALL),
big AS (SELECT merchant FROM history GROUP BY merchant HAVING count(*) > 50000),
candidates AS (
    SELECT p.merchant, p.customer, p.n, w.weight FROM pairs p JOIN big USING (merchant) LEFT JOIN weights w USING (merchant, customer)
),
thresholds AS (
    SELECT merchant, quantile_cont(n, 0.9) AS p90, quantile_cont(weight, 0.1) AS w10 FROM candidates GROUP BY merchant
)
SELECT 'PatId1' AS pattern_id, 'UPGRADE' AS action_type, customer, merchant
FROM candidates JOIN thresholds USING (merchant) WHERE n >= p90 AND weight <= w10
UNION ALL
SELECT 'PatId2', 'CHILD', customer, merchant FROM pairs WHERE n >= 80 AND avg_amount < 23
UNION ALL
SELECT 'PatId3', 'DEI-NEEDED', '', merchant FROM pairs GROUP BY merchant
HAVING count(*) FILTER (WHERE clear_gender = 'F') < count(*) FILTER (WHERE clear_gender = 'M')
   AND count(*) FILTER (WHERE clear_gender = 'F') > 100
