"""Typed settings: where the platform keeps its state and which environment variables steer it.

Every file the platform writes lives under one state folder (``HOUSING_HOME``, default ``.housing/``
at the repository root): the Dagster instance, MLflow tracking and artifacts, the capture store,
quarantined rows and reports. This module reads the embedded profile's environment variables;
``profiles.py`` reads those of the production profile (PostgreSQL + S3). The README's configuration
section lists them all.

It imports nothing heavy: the serving package and the CLI import it as well as the Dagster code.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_PATH = PROJECT_ROOT / "data" / "california_housing.csv"
DEFAULT_STATE_DIR = PROJECT_ROOT / ".housing"

# Phone-home telemetry of the libraries we embed. On an offline platform it can only time out, and
# users of a self-hosted platform expect it off. Set before those libraries are imported.
TELEMETRY_OPT_OUT = {
    "MLFLOW_DISABLE_TELEMETRY": "true",  # mlflow >= 3.2 usage telemetry
    "DO_NOT_TRACK": "true",  # honoured by mlflow and evidently
    "ITERATIVE_DO_NOT_TRACK": "true",  # evidently's telemetry client (iterative-telemetry)
    "DAGSTER_DISABLE_TELEMETRY": "true",  # belt and braces; dagster.yaml also disables it
}

DAGSTER_YAML = """\
# Written by housing_platform.config.settings; edit HOUSING_HOME instead of moving these paths.
# Embedded default profile: SQLite storage inside the state folder, telemetry off.
storage:
  sqlite:
    base_dir: {storage_dir}
local_artifact_storage:
  module: dagster._core.storage.root
  class: LocalArtifactStorage
  config:
    base_dir: {artifact_dir}
compute_logs:
  module: dagster._core.storage.local_compute_log_manager
  class: LocalComputeLogManager
  config:
    base_dir: {compute_log_dir}
telemetry:
  enabled: false
nux:
  enabled: false
"""


class HousingSettings(BaseModel):
    """Where the platform keeps its state. Build it with :meth:`from_env`."""

    home: Path = Field(description="State folder for everything the platform writes.")
    data_path: Path = Field(description="The district CSV that `raw_housing_data` reads.")
    monitoring_start_date: str = Field(
        "2026-01-01", description="First day of the monitoring partitions, YYYY-MM-DD (HOUSING_MONITORING_START_DATE)."
    )

    @classmethod
    def from_env(cls) -> "HousingSettings":
        home = Path(os.environ.get("HOUSING_HOME") or DEFAULT_STATE_DIR).expanduser().resolve()
        data_path = Path(os.environ.get("HOUSING_DATA_PATH") or DEFAULT_DATA_PATH).expanduser().resolve()
        start = os.environ.get("HOUSING_MONITORING_START_DATE") or cls.model_fields["monitoring_start_date"].default
        return cls(home=home, data_path=data_path, monitoring_start_date=start)

    # Sub-folders of the state folder, one per kind of state.
    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def storage_dir(self) -> Path:
        """Asset values written by the IO manager (Parquet / JSON, never pickle)."""
        return self.home / "storage"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def artifacts_dir(self) -> Path:
        """Fitted transformers, Keras models and other files produced by assets."""
        return self.home / "artifacts"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> str:
        return os.environ.get("HOUSING_MLFLOW_ARTIFACT_ROOT") or (self.mlflow_dir / "artifacts").as_uri()

    @property
    def mlflow_ui_url(self) -> str:
        """Where `make mlflow-ui` serves the MLflow UI; used for links in Dagster metadata."""
        return os.environ.get("HOUSING_MLFLOW_UI_URL") or "http://127.0.0.1:5000"

    @property
    def capture_url(self) -> str:
        return os.environ.get("HOUSING_CAPTURE_URL") or f"sqlite:///{self.home / 'capture' / 'capture.db'}"

    def ensure_dagster_home(self) -> Path:
        """Create the Dagster instance folder with its ``dagster.yaml`` (SQLite, telemetry off)."""
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        config = self.dagster_home / "dagster.yaml"
        content = DAGSTER_YAML.format(
            storage_dir=self.dagster_home / "storage",
            artifact_dir=self.dagster_home,
            compute_log_dir=self.dagster_home / "logs",
        )
        if not config.exists() or config.read_text() != content:
            config.write_text(content)
        return self.dagster_home


def disable_telemetry() -> None:
    """Opt out of every embedded library's telemetry unless the user already chose otherwise."""
    for name, value in TELEMETRY_OPT_OUT.items():
        os.environ.setdefault(name, value)


def apply_process_defaults(settings: HousingSettings) -> None:
    """Keep library caches inside the state folder so nothing is written elsewhere."""
    disable_telemetry()
    cache = settings.home / "cache"
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
    os.environ.setdefault("KERAS_HOME", str(cache / "keras"))
    # TensorFlow's C++ start-up chatter (oneDNN notes, "no CUDA driver") is noise on a CPU machine.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
