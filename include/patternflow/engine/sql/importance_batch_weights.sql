-- One batch of CustomerImportance rows (the Arrow table `importance`) summed per (merchant,
-- customer), all typeTrans together: the partial sums that `importance_merged_weights.sql` adds
-- up batch after batch. A pair's weight is the mean of its rows' Weight, so the exact partials
-- are the sum of the weights in integer cents and the number of rows.
SELECT
    Target                                      AS merchant,
    Source                                      AS customer,
    sum(CAST(Weight * 100 AS BIGINT))::HUGEINT   AS weight_cents,
    count(*)::BIGINT                            AS weight_rows
FROM importance
GROUP BY Target, Source
