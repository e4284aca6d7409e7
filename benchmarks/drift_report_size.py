"""Size of one day's drift HTML: Evidently's single file vs the platform's page, side by side in one run.

    .venv/bin/python benchmarks/drift_report_size.py            # 2,500 and 100,000 current rows
    .venv/bin/python benchmarks/drift_report_size.py --rows 1000000

Reference: 5,000 rows of the validated table (as `registered_model_version` stores), current traffic the
`income_shift` scenario of held-out rows, a stand-in prediction. For each size: bytes of Evidently's own
`Snapshot.save_html` (viewer inlined), of the platform's page (`DriftResult.write_reports`: verdict first,
viewer shared in `js/`), of the shared viewer, and of the JSON (the full metrics), plus the ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from housing_platform.config.settings import DEFAULT_DATA_PATH
from housing_platform.core.drift import compute_drift
from housing_platform.core.drift_report_html import LIB_FILE, LIB_FOLDER
from housing_platform.core.validation import read_housing_csv, validate_housing_frame
from housing_platform.devtools.scenarios import make_scenario

BUDGET_BYTES = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2_500, 100_000])
    args = parser.parse_args()
    valid = validate_housing_frame(read_housing_csv(DEFAULT_DATA_PATH)).valid
    order = np.random.default_rng(42).permutation(len(valid))

    def with_prediction(frame):
        return frame.assign(prediction=45_000.0 + 42_000.0 * frame["median_income"])

    reference = with_prediction(valid.iloc[order[:5_000]].reset_index(drop=True))
    held_out = valid.iloc[order[-4_000:]].reset_index(drop=True)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'rows':>10} {'evidently html':>15} {'platform html':>14} {'ratio':>6} {'shared viewer':>14} {'json':>8}  ≤ 1 MB")
    with tempfile.TemporaryDirectory() as folder:
        for rows in args.rows:
            result = compute_drift(reference, with_prediction(make_scenario(held_out, "income_shift", rows, 0)))
            single = Path(folder, f"evidently-{rows}.html")
            result.snapshot.save_html(str(single))
            page, data = result.write_reports(Path(folder, f"{rows}.html"), Path(folder, f"{rows}.json"))
            viewer = Path(folder, LIB_FOLDER, LIB_FILE).stat().st_size
            before, after = single.stat().st_size, page.stat().st_size
            print(f"{rows:>10,} {before:>15,} {after:>14,} {before / after:>5.1f}× {viewer:>14,} "
                  f"{data.stat().st_size:>8,}  {'yes' if after <= BUDGET_BYTES else 'NO'}")


if __name__ == "__main__":
    main()
