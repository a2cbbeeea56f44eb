-- The engine's state: aggregates, never raw history. Cost per chunk grows with the number of
-- (merchant, customer) pairs, not with the number of transactions seen.
--
-- A stream starts with one row per (merchant, customer) of CustomerImportance (n = 0) carrying
-- its weight, so that folding a chunk never has to look weights up; pairs seen only in the
-- transactions are added with no weight.
CREATE TABLE pairs (
    merchant    VARCHAR NOT NULL,
    customer    VARCHAR NOT NULL,
    n           BIGINT NOT NULL,         -- n(c, m): transactions of the customer with the merchant
    amount_sum  DECIMAL(18, 2) NOT NULL, -- their total amount, exact
    genders     UTINYINT NOT NULL,       -- bit set of the genders seen: 1 = F, 2 = M, 4 = anything else
    weight_sum  DECIMAL(18, 2),          -- weight(c, m) = weight_sum / weight_rows, exact;
    weight_rows BIGINT,                  -- NULL when CustomerImportance has no row for the pair
    PRIMARY KEY (merchant, customer)
);
CREATE TABLE emitted (
    pattern_id  VARCHAR NOT NULL,
    action_type VARCHAR NOT NULL,
    customer    VARCHAR NOT NULL,
    merchant    VARCHAR NOT NULL
);
