"""Whole graph from the raw CSV to a registered version: wall time and per-asset step times.

Target (issue: training & registry): ≤ 120 s on 2 cores after install, TensorFlow imported once
(the in-process executor runs every step in one process). Runs in a fresh temporary state folder:

    .venv/bin/python benchmarks/pipeline.py [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

SCRIPT = """
import os, sys, time, json
started = time.perf_counter()
import dagster as dg
from housing_platform.devtools import loop
from housing_platform.defs.definitions import build_definitions
from housing_platform.config.settings import HousingSettings
defs = build_definitions(HousingSettings.from_env())
with dg.instance_for_test() as instance:
    result = loop.train(defs, instance, {"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
    steps = loop.step_durations(result)
    report = defs.load_asset_value("evaluation_report", instance=instance)
print(json.dumps({"success": result.success, "total": time.perf_counter() - started, "steps": steps,
                  "rmse": report["metrics"]["rmse"]}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    import json

    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "HOUSING_HOME": home, "TF_CPP_MIN_LOG_LEVEL": "3"}
            wall = time.perf_counter()
            completed = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - wall
        if completed.returncode != 0:
            print(completed.stderr[-3000:])
            return 1
        figures = json.loads(completed.stdout.strip().splitlines()[-1])
        print(f"run {run}: {'SUCCESS' if figures['success'] else 'FAILED'}; wall {wall:.1f} s "
              f"(process incl. imports {figures['total']:.1f} s); test RMSE ${figures['rmse']:,.0f}")
        for step, seconds in figures["steps"]:
            print(f"  {step:<48} {seconds:7.2f} s")
        print(f"  ratio to the 120 s target: {wall / 120:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
