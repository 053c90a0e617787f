"""Write machines.csv: a small synthetic table for the tabular multilabel example.

Each row is a machine's sensor readings; three alarms may be on at once, each a known
function of the readings: ``overheat`` (temperature above 80), ``leak`` (pressure
below 2) and ``wear`` (vibration above 0.6, or an old machine on line B). The columns
mix 0/1 and true/false, as exported data does; some alarm cells are empty (unknown).

    python examples/tabular-multilabel/make_data.py   # rewrites machines.csv beside it
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def main(rows: int = 400, seed: int = 0) -> Path:
    """Write ``rows`` rows (seeded) and return the file."""
    rng = np.random.default_rng(seed)
    out = Path(__file__).with_name("machines.csv")
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["temperature", "pressure", "vibration", "hours", "line", "overheat", "leak", "wear"]
        )
        for i in range(rows):
            temperature = rng.normal(70, 12)
            pressure = rng.normal(3, 0.8)
            vibration = rng.uniform(0, 1)
            hours = rng.uniform(0, 20000)
            line = str(rng.choice(["A", "B"]))
            overheat = int(temperature > 80)
            leak = "true" if pressure < 2 else "false"
            wear = int(vibration > 0.6 or (line == "B" and hours > 15000))
            cells = [
                f"{temperature:.1f}",
                f"{pressure:.2f}",
                f"{vibration:.3f}",
                f"{hours:.0f}",
                line,
                overheat,
                leak,
                wear,
            ]
            if i % 17 == 3:
                cells[6] = ""  # leak not inspected: an unknown label
            writer.writerow(cells)
    return out


if __name__ == "__main__":
    print(main())
