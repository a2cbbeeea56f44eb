"""Published figures of the real BankSim file (bs140513_032310.csv, 594,643 transactions).

The synthetic generator is built from these numbers and the tests hold its output to them.
"""

from __future__ import annotations

ROWS = 594_643
STEPS = 180
CUSTOMERS = 4_112
ROWS_AT_FIRST_STEP = 2_430
ROWS_AT_STEP_175 = 3_774
ZIPCODE = "28007"
FRAUD_ROWS = 7_200

# Rows per category (all rows, fraud included).
CATEGORY_ROWS: dict[str, int] = {
    "es_transportation": 505_119,
    "es_food": 26_254,
    "es_health": 16_133,
    "es_wellnessandbeauty": 15_086,
    "es_fashion": 6_454,
    "es_barsandrestaurants": 6_373,
    "es_hyper": 6_098,
    "es_sportsandtoys": 4_002,
    "es_tech": 2_370,
    "es_home": 1_986,
    "es_hotelservices": 1_744,
    "es_otherservices": 912,
    "es_contents": 885,
    "es_travel": 728,
    "es_leisure": 499,
}

# Fraudulent rows per category (they sum to FRAUD_ROWS; the other categories have none). These
# per-category figures are recalled from public analyses of the file, not from its publication.
FRAUD_ROWS_BY_CATEGORY: dict[str, int] = {
    "es_sportsandtoys": 1_982,
    "es_health": 1_696,
    "es_wellnessandbeauty": 718,
    "es_travel": 578,
    "es_hotelservices": 548,
    "es_leisure": 474,
    "es_home": 302,
    "es_hyper": 280,
    "es_otherservices": 228,
    "es_tech": 158,
    "es_barsandrestaurants": 120,
    "es_fashion": 116,
}

# Amount of non-fraud rows: (mean, standard deviation, maximum) per category.
AMOUNT_STATS: dict[str, tuple[float, float, float]] = {
    "es_transportation": (26.96, 17.53, 118.07),
    "es_food": (37.07, 25.00, 154.91),
    "es_health": (103.74, 76.87, 468.81),
    "es_wellnessandbeauty": (57.32, 41.48, 260.12),
    "es_fashion": (62.35, 44.37, 269.39),
    "es_barsandrestaurants": (41.15, 29.56, 166.81),
    "es_hyper": (40.04, 27.96, 168.94),
    "es_sportsandtoys": (88.50, 63.14, 374.46),
    "es_tech": (99.92, 73.50, 454.83),
    "es_home": (113.34, 83.26, 523.11),
    "es_hotelservices": (106.55, 69.37, 345.87),
    "es_otherservices": (75.69, 54.63, 298.81),
    "es_contents": (44.55, 33.16, 185.13),
    "es_travel": (669.03, 496.56, 2144.86),
    "es_leisure": (73.23, 21.34, 120.92),
}
OVERALL_MEAN_AMOUNT = 37.9
MAX_AMOUNT = 8_329.96

# Merchants: 50 in all, one category each. The ten named sizes, then 40 small merchants that
# share the rest of their categories' rows. The category of the unnamed large merchants is
# inferred from the category totals (e.g. sportsandtoys 4,002 = 3,988 + one merchant of 14).
LARGE_MERCHANTS: list[tuple[str, int]] = [
    ("es_transportation", 299_693),
    ("es_transportation", 205_426),
    ("es_food", 26_254),
    ("es_wellnessandbeauty", 6_821),
    ("es_barsandrestaurants", 6_373),
    ("es_hyper", 6_098),
    ("es_health", 5_343),
    ("es_sportsandtoys", 3_988),
    ("es_health", 3_814),
    ("es_fashion", 3_508),
]
SMALL_MERCHANTS_BY_CATEGORY: dict[str, int] = {
    "es_health": 9,
    "es_wellnessandbeauty": 10,
    "es_fashion": 4,
    "es_sportsandtoys": 1,
    "es_tech": 4,
    "es_home": 3,
    "es_hotelservices": 3,
    "es_otherservices": 2,
    "es_contents": 1,
    "es_travel": 2,
    "es_leisure": 1,
}
MERCHANTS = len(LARGE_MERCHANTS) + sum(SMALL_MERCHANTS_BY_CATEGORY.values())

# Rows per gender (gender is a property of the customer; 'E' is an enterprise, 'U' unknown).
GENDER_ROWS: dict[str, int] = {"F": 324_565, "M": 268_385, "E": 1_178, "U": 515}
# Rows per age code; enterprises ('E') are the customers of age 'U'.
AGE_ROWS: dict[str, int] = {
    "2": 187_310,
    "3": 147_131,
    "4": 109_025,
    "5": 62_642,
    "1": 58_131,
    "6": 26_774,
    "0": 2_452,
    "U": 1_178,
}
BUSIEST_CUSTOMER_ROWS = 265

# What the three patterns give on the real file with the default thresholds.
CHILD_PAIRS = 34
DEI_NEEDED_MERCHANTS = 1
