"""The bound covers the registered model's own variation: oneDNN on/off, one or two intra-op threads.

Each variant runs the registered model on the whole test split in its own process (TensorFlow reads
``TF_ENABLE_ONEDNN_OPTS`` when it loads; thread pools are fixed at the first op): the pyfunc's
``predict``, and its network on one large batch (which TensorFlow does spread over its intra-op
threads; see ``_keras_reference.py``). Every prediction must lie within the fast path's per-row
bound, in both precisions. The test prints what each process reports it used and the largest
deviation/bound ratio observed (pytest -s).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from housing_platform.core.schema import FEATURE_COLUMNS
from housing_platform.devtools.tiny_models import RegisteredModels
from housing_platform.scoring.scorer import FastScorer
from housing_platform.scoring.verification import check_skew

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("_keras_reference.py")
VARIANTS = [(onednn, threads) for onednn in ("0", "1") for threads in (1, 2)]
CHILD_TIMEOUT_SECONDS = 240  # one process loads TF + MLflow (~10 s here) and scores 4k rows


def _onednn_summary(stdout: str) -> str:
    """What oneDNN's verbose log says ran: its thread-pool size and the primitives executed."""
    runtime = sorted({line.split(",")[-1] for line in stdout.splitlines() if "runtime:" in line and "nthr" in line})
    executed = sorted({
        ":".join(filter(None, line.split(",")[5:7]))
        for line in stdout.splitlines() if line.startswith("onednn_verbose,v1,primitive,exec")
    })
    return f"oneDNN runtime {'/'.join(runtime) or '-'}, primitives {', '.join(executed) or 'none'}"


def _run_reference(models: RegisteredModels, input_path: Path, output_path: Path, onednn: str, threads: int):
    env = dict(os.environ)
    env.update(models.env())
    env.update({"TF_ENABLE_ONEDNN_OPTS": onednn, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    uri = f"models:/{models.model_name}/{models.versions[0]}"
    done = subprocess.run(
        [sys.executable, str(CHILD), uri, str(input_path), str(output_path), str(threads)],
        env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    used = json.loads(next(line for line in reversed(done.stdout.splitlines()) if line.startswith("REFERENCE_RUN "))
                      .removeprefix("REFERENCE_RUN "))
    with np.load(output_path) as saved:
        return {name: saved[name] for name in ("pyfunc", "large_batch")}, used, _onednn_summary(done.stdout)


def test_the_bound_covers_the_reference_under_onednn_and_thread_variants(models, tmp_path):
    test = models.test
    input_path = tmp_path / "test_split.parquet"
    test[list(FEATURE_COLUMNS)].to_parquet(input_path)

    python_model = models.load_pyfunc(models.versions[0]).unwrap_python_model()
    scorers = {p: FastScorer.from_python_model(python_model, precision=p) for p in ("float64", "float32")}
    fast = {p: s.score(test) for p, s in scorers.items()}

    predictions, lines, worst = {}, [], {}
    for onednn, threads in VARIANTS:
        runs, used, summary = _run_reference(models, input_path, tmp_path / f"ref_{onednn}_{threads}.npz", onednn, threads)
        # The process did what the variant says (TensorFlow's own report, not the environment we set).
        assert used["onednn_enabled"] == (onednn == "1"), used
        assert used["intra_op_threads"] == threads, used
        figures = []
        for run, values in runs.items():
            assert len(values) == len(test)
            predictions[(onednn, threads, run)] = values
            for precision, scorer in scorers.items():
                check = check_skew(scorer, test, fast[precision], values)
                assert check.passed, f"oneDNN={onednn}, {threads} threads, {run}, {precision}: {check.describe()}"
                worst[(onednn, threads, run, precision)] = (float(check.deviations.max()), check.worst_ratio)
                figures.append(f"{run} vs {precision} ${check.deviations.max():.4f} = {check.worst_ratio:.2e}")
        lines.append(
            f"TF_ENABLE_ONEDNN_OPTS={onednn}, {threads} intra-op thread(s): TF reports oneDNN "
            f"{'on' if used['onednn_enabled'] else 'off'}, intra {used['intra_op_threads']}, "
            f"inter {used['inter_op_threads']} ({summary}); max deviation = fraction of the bound: " + "; ".join(figures)
        )
    spread = max(float(np.abs(predictions[a] - predictions[b]).max()) for a, b in itertools.combinations(predictions, 2))
    differing = max(int((predictions[a] != predictions[b]).sum()) for a, b in itertools.combinations(predictions, 2))
    bound = check_skew(scorers["float64"], test, fast["float64"], fast["float64"]).bounds
    print("\n" + "\n".join(lines))
    print(
        f"reference spread across the variants: up to ${spread:.4f} on a row ({differing:,} of {len(test):,} rows "
        f"differ between some pair); bound (float64 fast path) median ${np.median(bound):.2f}, max ${bound.max():.2f}; "
        f"largest deviation/bound over all variants: {max(r for _, r in worst.values()):.2e}"
    )
    for run in ("pyfunc", "large_batch"):  # which settings give identical digits (informative, CPU-specific)
        groups: dict[bytes, list[str]] = {}
        for (onednn, threads, name), values in predictions.items():
            if name == run:
                groups.setdefault(values.tobytes(), []).append(f"oneDNN={onednn}/{threads}t")
        print(f"{run}: bit-identical groups: " + " | ".join(", ".join(g) for g in groups.values()))
