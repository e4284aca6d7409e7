"""Code versions follow the source an asset depends on, and Dagster then reports the right assets stale."""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from housing_platform.config.dagster_yaml import embedded_dagster_yaml, write_dagster_yaml
from housing_platform.config.settings import HousingSettings
from housing_platform.defs import code_versions
from housing_platform.defs.code_versions import ASSET_SOURCES, PACKAGE_ROOT, asset_code_version, code_version
from housing_platform.defs.definitions import build_definitions
from housing_platform.defs.ingestion.config import ValidationGateConfig
from housing_platform.defs.labels.config import LabelGateConfig
from housing_platform.defs.monitoring.config import DriftHistoryConfig, DriftReportConfig, LivePerformanceConfig
from housing_platform.defs.registry.assets import RegistrationConfig
from housing_platform.defs.rollout.config import ChallengerComparisonConfig
from housing_platform.defs.serving.assets import BatchScoringConfig
from housing_platform.defs.training.config import EvaluationConfig, TrainingRunConfig
from housing_platform.devtools.processes import NotReady, free_port, stop, wait_until

RUN_CONFIG = {
    "validated_housing_data": ValidationGateConfig,
    "labelled_traffic": LabelGateConfig,
    "trained_model": TrainingRunConfig,
    "evaluation_report": EvaluationConfig,
    "registered_model_version": RegistrationConfig,
    "batch_predictions": BatchScoringConfig,
    "drift_report": DriftReportConfig,
    "live_model_performance": LivePerformanceConfig,
    "challenger_comparison": ChallengerComparisonConfig,
    "drift_history": DriftHistoryConfig,
}
# Versions are per module: an asset depends on `core/features.py` when a module it uses imports it,
# directly or not. The ingestion gate, the split and the drift report (which compares stored rows and
# predictions) read no model code; `training_data`, `inference_log` and `live_model_performance` do,
# through `live_quality` → `evaluation`.
# Assets whose computation never runs core/features.py (live quality reads core/metrics.py, not
# core/evaluation.py, so the monitoring and training-data assets are not among the feature's users).
FEATURE_FREE = {
    "raw_housing_data", "validated_housing_data", "housing_splits", "drift_report", "drift_history",
    "training_data", "inference_log", "live_model_performance",
    # The label gate scores with the registered champion (its own files), not with this checkout's features.
    "labelled_traffic",
    # The golden holdout is base rows chosen by the hash split and pinned; no feature code decides them.
    "golden_holdout",
    # The rollout compares captured predictions with labels and moves aliases: no feature code runs.
    "challenger_comparison", "alias_history",
}
LAYERS = ("core", "scoring", "adapters")


def versions(**kwargs) -> dict[str, str]:
    return {asset: asset_code_version(asset, RUN_CONFIG.get(asset), **kwargs) for asset in ASSET_SOURCES}


def test_every_asset_carries_the_code_version_of_its_sources(tmp_path: Path) -> None:
    graph = build_definitions(HousingSettings(home=tmp_path, data_path=tmp_path / "d.csv")).resolve_asset_graph()
    materializable = {k.to_user_string() for k in graph.get_all_asset_keys() if not graph.get(k).is_external}
    assert materializable == set(ASSET_SOURCES)
    expected = versions()
    for asset in ASSET_SOURCES:
        assert graph.get(dg.AssetKey(asset)).code_version == expected[asset], asset
    assert len(set(expected.values())) == len(expected)  # no two assets share a version by accident


def test_editing_the_feature_code_changes_the_versions_of_exactly_the_assets_that_use_it(monkeypatch) -> None:
    before = versions()
    features = PACKAGE_ROOT / "core" / "features.py"
    real_read = code_versions.read_source
    monkeypatch.setattr(
        code_versions,
        "read_source",
        lambda path: real_read(path) + (b"\n# a changed feature pipeline\n" if path == features else b""),
    )
    after = versions()
    changed = {asset for asset in ASSET_SOURCES if before[asset] != after[asset]}
    assert changed == set(ASSET_SOURCES) - FEATURE_FREE


def test_a_new_run_config_default_is_a_new_code_version() -> None:
    class StricterGate(EvaluationConfig):
        max_rmse_dollars: float = 40_000.0

    modules = ASSET_SOURCES["evaluation_report"]
    assert code_version(modules, StricterGate) != code_version(modules, EvaluationConfig)
    assert code_version(modules, EvaluationConfig) == asset_code_version("evaluation_report", EvaluationConfig)


def _domain_imports(path: Path) -> set[str]:
    """Modules of core/scoring/adapters that ``path`` imports (module-level or lazily)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("housing_platform."):
            candidates = [f"{node.module}.{alias.name}" for alias in node.names]
            modules = [c for c in candidates if _is_module(c)] or [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names if alias.name.startswith("housing_platform.")]
        else:
            continue
        found.update(m.removeprefix("housing_platform.") for m in modules)
    return {m for m in found if m.split(".")[0] in LAYERS}


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE_ROOT / relative.with_suffix(".py")).is_file() or (PACKAGE_ROOT / relative / "__init__.py").is_file()


def test_the_sources_of_a_modules_assets_cover_every_domain_module_it_imports() -> None:
    """A new import in an asset module must be added to ASSET_SOURCES, or edits to it go unnoticed."""
    by_module: dict[str, set[str]] = {}
    for modules in ASSET_SOURCES.values():
        by_module.setdefault(modules[0], set()).update(code_versions.source_closure(modules))
    for module, covered in by_module.items():
        missing = _domain_imports(code_versions.module_path(module)) - covered
        assert not missing, f"{module} imports {sorted(missing)}, which no asset of it lists in ASSET_SOURCES"


# -- Dagster's own verdict: staleness read through the public GraphQL API of dagster-webserver -----------

STANDINS = '''
"""Stand-ins for four training assets, versioned by the real code-version function over a copy of the code."""
from pathlib import Path

import dagster as dg

from housing_platform.defs.code_versions import asset_code_version

ROOT = Path({root!r})


def standin(name, deps=()):
    @dg.asset(name=name, deps=list(deps), code_version=asset_code_version(name, root=ROOT))
    def _standin() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    return _standin


assets = [
    standin("housing_splits"),
    standin("fitted_transformer", ["housing_splits"]),
    standin("trained_model", ["housing_splits", "fitted_transformer"]),
    standin("evaluation_report", ["housing_splits", "fitted_transformer", "trained_model"]),
]
defs = dg.Definitions(assets=assets)
'''
STALENESS_QUERY = "{ assetNodes { assetKey { path } staleStatus staleCauses { key { path } category reason } } }"
WEBSERVER_START_SECONDS = 120.0


def _load_standins(path: Path):
    spec = importlib.util.spec_from_file_location(f"standins_{time.monotonic_ns()}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Webserver:
    """`dagster-webserver -f <file>` on a free loopback port, answering GraphQL for ``dagster_home``."""

    def __init__(self, code: Path, dagster_home: Path, log: Path):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/graphql"
        command = [str(Path(sys.executable).parent / "dagster-webserver"), "-f", str(code), "-h", "127.0.0.1",
                   "-p", str(port)]
        self.log = log.open("wb")
        # A session of its own: the webserver's code-server child stops with it.
        self.process = subprocess.Popen(command, env={**os.environ, "DAGSTER_HOME": str(dagster_home)},
                                        cwd=code.parent, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def query(self, text: str) -> dict:
        import httpx

        def answer() -> dict:
            try:
                data = httpx.post(self.url, json={"query": text}, timeout=30.0).json()
            except (httpx.TransportError, ValueError) as error:
                raise NotReady(str(error)) from None
            if not data.get("data") or data.get("errors"):
                raise NotReady(str(data)[:500])
            return data["data"]

        return wait_until(answer, what=f"dagster-webserver's GraphQL at {self.url}", process=self.process,
                          timeout_seconds=WEBSERVER_START_SECONDS, log_path=Path(self.log.name))

    def staleness(self) -> dict[str, tuple[str, set[tuple[str, str, str]]]]:
        """Per asset: its stale status and its root causes as (asset, category, reason)."""
        nodes = self.query(STALENESS_QUERY)["assetNodes"]
        return {
            node["assetKey"]["path"][-1]: (
                node["staleStatus"],
                {(cause["key"]["path"][-1], cause["category"], cause["reason"]) for cause in node["staleCauses"]},
            )
            for node in nodes
        }

    def close(self) -> None:
        try:
            stop(self.process, group=True)
        finally:
            self.log.close()


@pytest.mark.slow
def test_an_edit_to_the_feature_code_makes_the_transformer_and_its_downstream_stale(tmp_path: Path) -> None:
    root = tmp_path / "source" / "housing_platform"
    shutil.copytree(PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    code = tmp_path / "standins.py"
    code.write_text(STANDINS.format(root=str(root)))
    dagster_home = write_dagster_yaml(tmp_path / "dagster", embedded_dagster_yaml(tmp_path / "dagster"))
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert dg.materialize(_load_standins(code).assets, instance=instance).success

    features = root / "core" / "features.py"
    features.write_text(features.read_text() + "\n# a changed feature pipeline\n")
    server = Webserver(code, dagster_home, tmp_path / "webserver.log")
    try:
        stale = server.staleness()
        assert stale["housing_splits"] == ("FRESH", set())
        for asset in ("fitted_transformer", "trained_model", "evaluation_report"):
            # The model and the evaluation call the feature code too (transform): new code of their own.
            assert stale[asset] == ("STALE", {(asset, "CODE", "has a new code version")}), asset

        # Rematerialized with the new code, the transformer has a new data version, which its
        # downstream reports as well.
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            standins = _load_standins(code)
            assert dg.materialize(standins.assets, selection=["fitted_transformer"], instance=instance).success
        stale = server.staleness()
        assert stale["fitted_transformer"] == ("FRESH", set())
        assert stale["trained_model"] == (
            "STALE",
            {
                ("trained_model", "CODE", "has a new code version"),
                ("fitted_transformer", "DATA", "has a new data version"),
            },
        )
        assert stale["housing_splits"] == ("FRESH", set())
    finally:
        server.close()


def test_the_copy_of_the_code_gives_the_same_versions(tmp_path: Path) -> None:
    """The stand-in test hashes a copy of the package; a copy must hash like the original."""
    root = tmp_path / "housing_platform"
    shutil.copytree(PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    assert versions(root=root) == versions()
