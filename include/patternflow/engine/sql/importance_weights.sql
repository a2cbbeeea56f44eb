-- CustomerImportance (the Arrow stream `importance`, parsed and handed over batch by batch)
-- summed per (merchant, customer), all typeTrans together, in one aggregation: memory follows the
-- number of pairs, not the size of the file. A pair's weight is the mean of its rows' Weight, so
-- the exact sums are the sum of the weights in integer cents and the number of rows; `low`, the
-- pair's smallest weight in cents, gives `weight_ranks.sql` the smallest of all rows.
SELECT
    Target                                      AS merchant,
    Source                                      AS customer,
    sum(CAST(Weight * 100 AS BIGINT))::HUGEINT   AS weight_cents,
    count(*)::BIGINT                            AS weight_rows,
    min(CAST(Weight * 100 AS BIGINT))::HUGEINT   AS low
FROM importance
GROUP BY Target, Source
