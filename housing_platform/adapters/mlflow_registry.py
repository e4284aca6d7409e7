"""MLflow: tracking runs, the registered `housing_price_model`, its aliases and lineage tags.

Plain Python (no Dagster): the Dagster assets, the model server and notebooks all use it.

* Tracking and registry live in the state folder by default (SQLite + local artifacts).
* A version is ONE pyfunc model logged *from code* (``housing_platform/adapters/pyfunc_model.py`` plus the
  skops transformer, the ``.keras`` network and a JSON config as artifacts), so loading it unpickles
  nothing and applies exactly the training preprocessing.
* Aliases: ``champion`` is what serves; the champion it replaced gets ``previous`` (rollback).
  :meth:`ModelRegistry.promote` stamps the version it makes champion with ``promoted_at`` (MLflow
  keeps no time for an alias move), so a check of the live endpoint knows since when it should serve it.
* Tags ``fast_path_verified`` (``true``/``false``) and ``fast_path_reason`` record the pipeline's
  verdict on whether the numpy fast path scores the version like the registered pyfunc.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

from housing_platform.adapters.mlflow_relocation import reroot_moved_registry
from housing_platform.config.settings import PROJECT_ROOT
from housing_platform.core.schema import CATEGORICAL_COLUMN, FEATURE_COLUMNS
from housing_platform.scoring.errors import ScoringError
from housing_platform.scoring.fallback import FALLBACK_ARTIFACT, fit_fallback_baseline
from housing_platform.scoring.integrity import FILES_SHA256_TAG, manifest_tag
from housing_platform.scoring.integrity import sha256_of as sha256_of  # the training assets hash their files with it

MODEL_NAME = "housing_price_model"
TRAINING_EXPERIMENT = "housing_price_model_training"
CHAMPION_ALIAS = "champion"
PREVIOUS_ALIAS = "previous"
PYFUNC_CODE_PATH = Path(__file__).with_name("pyfunc_model.py")
REFERENCE_ARTIFACT = "reference/reference.parquet"
PROMOTED_AT_TAG = "promoted_at"  # ISO-8601 UTC time the version last became champion (set by promote)
FAST_PATH_VERIFIED_TAG = "fast_path_verified"  # "true" / "false": the fast path scores like the pyfunc
FAST_PATH_REASON_TAG = "fast_path_reason"  # why, in one line (the worst row, its deviation and bound)
# A version that passed the gate on shifted labels waits for a person under this alias (cli/versions.py decides).
PENDING_APPROVAL_ALIAS = "pending_approval"
APPROVAL_STATUS_TAG = "approval_status"  # pending | approved | rejected | superseded
PENDING_REASON_TAG = "pending_reason"  # why the version was held (the label shift, with its numbers)
TRAINING_LABEL_STATS_TAG = "training_label_stats"  # JSON: rows and median label per ocean_proximity (core/label_shift.py)
INTERVAL_CALIBRATION_TAG = "interval_calibration"  # JSON: the version's prediction-interval calibration (core/conformal.py)
MAX_TAG_VALUE_CHARS = 5_000  # MLflow's limit on a model version tag's value
# Distributions the pyfunc model needs at load time, pinned to what is installed.
MODEL_REQUIREMENTS = ("mlflow", "tensorflow", "keras", "scikit-learn", "skops", "pandas", "numpy", "pyarrow")


def git_commit() -> str:
    """The commit of the code that trained the model, or "unknown" outside a git checkout."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return completed.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pinned_requirements() -> list[str]:
    return [f"{name}=={importlib_metadata.version(name)}" for name in MODEL_REQUIREMENTS]


class MissingTrackingDatabase(ScoringError):
    """A reader was pointed at an SQLite tracking database that does not exist (MLflow would create it empty)."""


def sqlite_database_path(tracking_uri: str) -> Path | None:
    """The file of a ``sqlite:///`` tracking URI (None for other schemes or an in-memory database)."""
    if not tracking_uri.startswith("sqlite:///") or tracking_uri.removeprefix("sqlite:///") in ("", ":memory:"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0])


def require_tracking_database(tracking_uri: str) -> None:
    """Raise :class:`MissingTrackingDatabase`, naming the path, if ``tracking_uri`` is an SQLite file that is not there."""
    path = sqlite_database_path(tracking_uri)
    if path is not None and not path.is_file():
        raise MissingTrackingDatabase(
            f"the MLflow tracking database {path} does not exist (tracking URI {tracking_uri}); nothing has been "
            "registered there. Check HOUSING_HOME / MLFLOW_TRACKING_URI, or create it with `housing-platform init` "
            "and a materialization of the training assets"
        )


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str  # models:/name/version
    tags: dict[str, str]


class ModelRegistry:
    """One MLflow tracking + registry location, configured explicitly (no global state leaks)."""

    def __init__(
        self,
        tracking_uri: str,
        artifact_root: str,
        model_name: str = MODEL_NAME,
        experiment_name: str = TRAINING_EXPERIMENT,
        ui_url: str = "http://127.0.0.1:5000",
        *,
        must_exist: bool = False,
    ):
        """``must_exist``: a reader (the server, batch scoring) refuses a missing SQLite database with
        :class:`MissingTrackingDatabase` instead of letting MLflow create an empty one."""
        import mlflow

        if must_exist:
            require_tracking_database(tracking_uri)
        database = sqlite_database_path(tracking_uri)
        if database is not None:  # a copied or moved state folder: its recorded artifact URIs follow it
            reroot_moved_registry(database, artifact_root)
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root.rstrip("/")
        self.model_name = model_name
        self.experiment_name = experiment_name
        self.ui_url = ui_url.rstrip("/")
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if artifact_root.startswith("file://"):
            Path(artifact_root.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    # -- experiments and runs -------------------------------------------------------------------
    def experiment_id(self, name: str | None = None) -> str:
        """Get or create an experiment whose artifacts live under our artifact root (not ./mlruns)."""
        name = name or self.experiment_name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = f"{self.artifact_root}/{name}"
        return self.client.create_experiment(name, artifact_location=location)

    def start_run(self, run_name: str, tags: dict[str, str] | None = None, experiment: str | None = None) -> str:
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags or {})
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), stamp, step or 0) for k, v in metrics.items() if v == v]
        )

    def log_metric_history(self, run_id: str, history: dict[str, list[float]]) -> None:
        """Per-epoch curves: one MLflow metric per series, step = epoch."""
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(name, float(v), stamp, step) for name, values in history.items() for step, v in enumerate(values)]
        for start in range(0, len(metrics), 900):  # MLflow caps a batch at 1,000 metrics
            self.client.log_batch(run_id, metrics=metrics[start : start + 900])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    def run_url(self, run_id: str) -> str:
        run = self.client.get_run(run_id)
        return f"{self.ui_url}/#/experiments/{run.info.experiment_id}/runs/{run_id}"

    def version_url(self, version: str) -> str:
        return f"{self.ui_url}/#/models/{self.model_name}/versions/{version}"

    # -- registered versions --------------------------------------------------------------------
    def log_and_register(
        self,
        run_id: str,
        artifacts: dict[str, str],
        input_example: pd.DataFrame,
        predictions_example: Any,
        tags: dict[str, str],
        reference: pd.DataFrame | None = None,
    ) -> RegisteredVersion:
        """Log the pyfunc (models-from-code) in ``run_id``, register it, and tag the version.

        Aliases are NOT moved here: :meth:`promote` does that, so a caller can register first and
        promote only when it means to.
        """
        import mlflow
        from mlflow.models import infer_signature

        signature = infer_signature(input_example, predictions_example)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_CODE_PATH),
                artifacts=artifacts,
                signature=signature,
                input_example=input_example,
                pip_requirements=pinned_requirements(),
            )
            if reference is not None:
                with tempfile.TemporaryDirectory() as folder:
                    path = Path(folder) / Path(REFERENCE_ARTIFACT).name
                    reference.to_parquet(path, index=False)
                    mlflow.log_artifact(str(path), artifact_path=str(Path(REFERENCE_ARTIFACT).parent))
            # Every file of the model as stored, hashed now and recorded in the registry database:
            # load_fast_scorer refuses the version if one of them changes (scoring/integrity.py).
            with tempfile.TemporaryDirectory() as folder:
                stored = mlflow.artifacts.download_artifacts(
                    artifact_uri=info.model_uri, dst_path=folder, tracking_uri=self.tracking_uri
                )
                tags = {**tags, FILES_SHA256_TAG: manifest_tag(stored)}
        version = mlflow.register_model(info.model_uri, self.model_name, tags=tags)
        return RegisteredVersion(
            name=self.model_name,
            version=str(version.version),
            run_id=run_id,
            model_uri=f"models:/{self.model_name}/{version.version}",
            tags={k: str(v) for k, v in tags.items()},
        )

    def champion(self) -> RegisteredVersion | None:
        return self.version_by_alias(CHAMPION_ALIAS)

    def version_by_alias(self, alias: str) -> RegisteredVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None
        return self._to_registered(version)

    def get_version(self, version: str) -> RegisteredVersion:
        return self._to_registered(self.client.get_model_version(self.model_name, str(version)))

    def _to_registered(self, version) -> RegisteredVersion:
        return RegisteredVersion(
            name=self.model_name,
            version=str(version.version),
            run_id=version.run_id,
            model_uri=f"models:/{self.model_name}/{version.version}",
            tags=dict(version.tags),
        )

    def promote(self, version: str) -> RegisteredVersion | None:
        """Point ``champion`` at ``version``; the replaced champion becomes ``previous``.

        ``version`` is stamped with the time (tag ``promoted_at``) unless it already was the champion.
        """
        old = self.champion()
        if old is not None and old.version != str(version):
            self.client.set_registered_model_alias(self.model_name, PREVIOUS_ALIAS, old.version)
        if old is None or old.version != str(version):
            stamp = datetime.now(UTC).isoformat()
            self.client.set_model_version_tag(self.model_name, str(version), PROMOTED_AT_TAG, stamp)
        self.client.set_registered_model_alias(self.model_name, CHAMPION_ALIAS, str(version))
        return old

    def hold_for_approval(self, version: str, reason: str) -> RegisteredVersion | None:
        """Point ``pending_approval`` at ``version`` (tagged pending, with ``reason``); ``champion`` does not move.

        Returns the version that held the alias before (tagged ``superseded``), if another did.
        """
        old = self.version_by_alias(PENDING_APPROVAL_ALIAS)
        if old is not None and old.version != str(version):
            self.set_tags(old.version, {APPROVAL_STATUS_TAG: "superseded", "superseded_by": str(version)})
        self.set_tags(version, {APPROVAL_STATUS_TAG: "pending", PENDING_REASON_TAG: reason})
        self.client.set_registered_model_alias(self.model_name, PENDING_APPROVAL_ALIAS, str(version))
        return old if old is not None and old.version != str(version) else None

    def remove_alias(self, alias: str) -> None:
        self.client.delete_registered_model_alias(self.model_name, alias)

    def promoted_at(self, version: RegisteredVersion) -> datetime | None:
        """When ``version`` last became champion through :meth:`promote` (None if never, or moved by hand)."""
        stamp = version.tags.get(PROMOTED_AT_TAG)
        try:
            return datetime.fromisoformat(stamp) if stamp else None
        except ValueError:
            return None

    def set_tags(self, version: str, tags: dict[str, str]) -> None:
        """Set tags on ``version`` (values cut to MLflow's limit)."""
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, str(version), key, str(value)[:MAX_TAG_VALUE_CHARS])

    def aliases_of(self, version: str) -> list[str]:
        return list(self.client.get_model_version(self.model_name, str(version)).aliases)

    def load_pyfunc(self, model_uri: str):
        import mlflow

        return mlflow.pyfunc.load_model(model_uri)

    def fallback_baseline(self, version: str) -> dict | None:
        """The fallback baseline stored with ``version`` (None for a version registered without one).

        Read from the version's files only after they match the registry's sha256 record.
        """
        import mlflow

        from housing_platform.scoring.integrity import verify_model_files

        registered = self.get_version(version)
        source = self.client.get_model_version(self.model_name, str(version)).source
        with tempfile.TemporaryDirectory() as folder:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=self._artifact_location(source), dst_path=folder, tracking_uri=self.tracking_uri
            )
            path = Path(local) / "artifacts" / f"{FALLBACK_ARTIFACT}.json"
            if not path.is_file():
                return None
            verify_model_files(local, registered.tags, registered.model_uri)
            return json.loads(path.read_text())

    def _artifact_location(self, source: str) -> str:
        """Where a version's files are, asked of THIS registry (``models:/m-…`` resolves process-wide)."""
        if source.startswith("models:/"):  # MLflow 3: the source names a logged model
            return self.client.get_logged_model(source.removeprefix("models:/")).artifact_location
        return source

    def load_reference(self, version: str) -> pd.DataFrame:
        """The training reference sample (features + predictions) stored with ``version``."""
        import mlflow

        run_id = self.get_version(version).run_id
        with tempfile.TemporaryDirectory() as folder:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=folder, tracking_uri=self.tracking_uri
            )
            return pd.read_parquet(local)


def write_json(path: str | Path, value: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True))
    return path


def feature_ranges(train: pd.DataFrame) -> dict:
    """Min/max of each numeric feature and the categories seen, on the train split.

    Stored with the version; the server flags (but accepts) request values outside these ranges.
    """
    ranges: dict = {}
    for column in FEATURE_COLUMNS:
        values = train[column].dropna()
        if column == CATEGORICAL_COLUMN:
            ranges[column] = {"categories": sorted(map(str, values.unique()))}
        else:
            ranges[column] = {"min": float(values.min()), "max": float(values.max())}
    return ranges


def model_artifacts(
    folder: str | Path, transformer_path: str | Path, network_path: str | Path, training_config: dict, train: pd.DataFrame,
    intervals: dict | None = None,
) -> dict[str, str]:
    """The artifact set `pyfunc_model.HousingPriceModel` loads, with the JSON files written to ``folder``.

    The keys are the contract with ``pyfunc_model.py``; pass the result to :meth:`ModelRegistry.log_and_register`.
    """
    folder = Path(folder)
    return {
        "transformer": str(transformer_path),
        "network": str(network_path),
        "config": str(write_json(folder / "training_config.json", training_config)),
        "feature_ranges": str(write_json(folder / "feature_ranges.json", feature_ranges(train))),
        # What the server answers with when it can load no version (scoring/fallback.py); not read by the pyfunc.
        FALLBACK_ARTIFACT: str(write_json(folder / f"{FALLBACK_ARTIFACT}.json", fit_fallback_baseline(train))),
        # The calibrated prediction intervals (core/conformal.py), when the training run made them.
        **({"intervals": str(write_json(folder / "intervals.json", intervals))} if intervals else {}),
    }
