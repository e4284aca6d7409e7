"""Code versions derived from the source an asset's computation depends on.

Dagster marks an asset stale when its code version differs from the one recorded with its latest
materialization, and marks everything downstream stale with it. A hand-written ``code_version="1"``
never changes, so a changed feature pipeline would leave the old transformer looking current. Here the
version is a short SHA-256 of the source files the asset's value depends on — its own module, the
domain modules it calls (listed in :data:`ASSET_SOURCES`) and every ``housing_platform`` module those
import, transitively — plus the JSON of its run config's defaults. Editing ``core/features.py`` gives
``fitted_transformer`` a new version and so marks it and its downstream stale; editing an unrelated
module does not. Files are read, never imported, so computing a version costs a few file reads.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

PACKAGE = "housing_platform"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
VERSION_HEX_DIGITS = 16
# Imports into these layers are followed transitively: they hold what computes a value. The Dagster
# layer (`defs`) and the settings (`config`) are not: they wire and describe, and following them would
# tie every asset to every other one.
FOLLOWED_LAYERS = ("core", "scoring", "adapters")

# Per asset: its own module first, then the domain modules whose code decides its value. Helpers that
# only shape metadata (`defs.metadata`) or hash a file for lineage (`sha256_of`) are left out.
ASSET_SOURCES: dict[str, tuple[str, ...]] = {
    "raw_housing_data": ("defs.ingestion.assets", "adapters.raw_sources", "core.validation"),
    "validated_housing_data": ("defs.ingestion.assets", "core.validation"),
    "housing_data_profile": ("defs.ingestion.assets", "core.data_profile"),
    "training_data": ("defs.training.assets", "core.live_quality", "core.validation", "adapters.capture.store"),
    "labelled_traffic": (
        "defs.labels.assets",
        "core.label_consistency",
        "core.live_quality",
        "core.validation",
        "core.splits",
        "adapters.capture.label_reviews",
        "adapters.mlflow_registry",
    ),
    "housing_splits": ("defs.training.assets", "core.splits"),
    "fitted_transformer": ("defs.training.assets", "core.features"),
    "trained_model": ("defs.training.assets", "core.model", "core.features"),
    "hyperparameter_search": ("defs.training.search", "core.search", "core.splits", "core.model", "core.features",
                              "adapters.file_store"),
    "golden_holdout": ("defs.training.golden", "core.golden_holdout", "core.metrics", "adapters.file_store"),
    "evaluation_report": (
        "defs.training.assets",
        "defs.training.golden",
        "core.evaluation",
        "core.baselines",
        "core.model_gate",
        "core.label_shift",
        "core.golden_holdout",
        "core.model",
        "core.features",
        "adapters.mlflow_registry",
        "adapters.pyfunc_model",
    ),
    "registered_model_version": (
        "defs.registry.assets",
        "defs.registry.checks",
        "core.label_shift",
        "core.rollout",
        "adapters.alias_moves",
        "adapters.fallback_store",
        "scoring.verification",
        "scoring.batch",
        "core.splits",
        "core.model",
        "core.features",
        "adapters.mlflow_registry",
        "adapters.pyfunc_model",
    ),
    "batch_predictions": (
        "defs.serving.assets",
        "scoring.batch",
        "scoring.verification",
        "adapters.model_uri",
        "adapters.mlflow_registry",
    ),
    "inference_log": ("defs.monitoring.assets", "core.live_quality", "adapters.capture.store"),
    "drift_report": ("defs.monitoring.assets", "core.drift", "adapters.mlflow_registry"),
    "live_model_performance": ("defs.monitoring.assets", "core.live_quality", "adapters.mlflow_registry"),
    "challenger_comparison": ("defs.rollout.assets", "defs.rollout.checks", "defs.rollout.evidence", "core.rollout",
                              "adapters.alias_moves", "adapters.mlflow_registry"),
    "alias_history": ("defs.rollout.assets", "adapters.alias_moves", "adapters.mlflow_registry"),
    "drift_history": ("defs.monitoring.history", "core.drift_history", "core.drift", "adapters.mlflow_registry"),
}


def read_source(path: Path) -> bytes:
    """The bytes hashed for one file (a seam for tests that simulate an edit)."""
    return path.read_bytes()


def module_path(module: str, root: Path = PACKAGE_ROOT) -> Path:
    """``core.features`` → ``<root>/core/features.py`` (or the package's ``__init__.py``)."""
    relative = Path(*module.split("."))
    for candidate in (root / relative.with_suffix(".py"), root / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"code version: no module {PACKAGE}.{module} under {root}")


def _imported_modules(path: Path, root: Path) -> set[str]:
    """The ``housing_platform`` modules a file imports (anywhere in it, lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(read_source(path), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from housing_platform.core import features` imports the module `core.features`; `from
            # housing_platform.core.schema import FEATURE_COLUMNS` imports `core.schema`.
            # Otherwise a name defined in `node.module`.
            names = [_submodule_or_module(f"{node.module}.{alias.name}", node.module, root) for alias in node.names]
        else:
            continue
        found.update(name.removeprefix(PACKAGE + ".") for name in names if name.startswith(PACKAGE + "."))
    return found


def _submodule_or_module(submodule: str, module: str, root: Path) -> str:
    try:
        module_path(submodule.removeprefix(PACKAGE + "."), root)
    except FileNotFoundError:
        return module
    return submodule


def source_closure(modules: Iterable[str], root: Path = PACKAGE_ROOT) -> list[str]:
    """``modules`` plus every module of :data:`FOLLOWED_LAYERS` they import, transitively; sorted."""
    seen: set[str] = set()
    pending = list(modules)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        if module.split(".")[0] in FOLLOWED_LAYERS:
            imported = _imported_modules(module_path(module, root), root)
            pending.extend(m for m in imported if m.split(".")[0] in FOLLOWED_LAYERS)
    return sorted(seen)


def code_version(modules: Iterable[str], config: type[BaseModel] | None = None, root: Path = PACKAGE_ROOT) -> str:
    """Short SHA-256 of the sources of ``modules`` (closed over their imports) and ``config``'s defaults."""
    digest = hashlib.sha256()
    for module in source_closure(modules, root):
        digest.update(module.encode() + b"\0" + read_source(module_path(module, root)) + b"\0")
    if config is not None:
        defaults = json.dumps(config().model_dump(mode="json"), sort_keys=True)
        digest.update(f"{config.__name__}\0{defaults}".encode())
    return digest.hexdigest()[:VERSION_HEX_DIGITS]


def asset_code_version(asset: str, config: type[BaseModel] | None = None, root: Path = PACKAGE_ROOT) -> str:
    """The code version of ``asset`` from its entry in :data:`ASSET_SOURCES` (and its run config class)."""
    return code_version(ASSET_SOURCES[asset], config, root)
