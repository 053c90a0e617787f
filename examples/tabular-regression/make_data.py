"""Write houses.csv: a small synthetic table for the tabular regression example.

Two targets follow known functions of the features, so a good model gets R² close to
1: ``price`` (thousands) = 3 * size_m2 - 2 * age + a district premium + noise, and
``rent`` (per month) = 4 * size_m2 + 150 * rooms + noise. Some rent cells are empty
(unknown values) and a few rows have neither target (unlabeled: the transfer split).

    python examples/tabular-regression/make_data.py   # rewrites houses.csv beside it
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

PREMIUM = {"centre": 120.0, "north": 40.0, "south": 0.0}


def main(rows: int = 400, seed: int = 0) -> Path:
    """Write ``rows`` rows (seeded) and return the file."""
    rng = np.random.default_rng(seed)
    out = Path(__file__).with_name("houses.csv")
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["size_m2", "rooms", "age", "district", "price", "rent"])
        for i in range(rows):
            size = rng.uniform(30, 200)
            rooms = int(np.clip(round(size / 30 + rng.normal(0, 0.7)), 1, 8))
            age = rng.uniform(0, 80)
            district = str(rng.choice(list(PREMIUM)))
            price = 3 * size - 2 * age + PREMIUM[district] + rng.normal(0, 15)
            rent = 4 * size + 150 * rooms + rng.normal(0, 40)
            cells = [f"{size:.1f}", rooms, f"{age:.0f}", district, f"{price:.1f}", f"{rent:.0f}"]
            if i % 13 == 5:
                cells[5] = ""  # rent unknown: that cell is NaN, the row stays labeled
            if i % 40 == 7:
                cells[4] = cells[5] = ""  # no target at all: an unlabeled row
            writer.writerow(cells)
    return out


if __name__ == "__main__":
    print(main())
