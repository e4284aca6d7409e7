"""Typed settings: where the platform keeps its state and which environment variables steer it.

Every file the platform writes lives under one state folder (``HOUSING_HOME``, default ``.housing/``
at the repository root): the Dagster instance, MLflow tracking and artifacts, the capture store,
quarantined rows and reports. :class:`HousingSettings` is the one place that reads the embedded
profile's environment variables and holds their defaults (pydantic-settings); ``profiles.py`` reads
those of the production profile (PostgreSQL + S3). The README's configuration table is generated
from these fields (``housing_platform.config.reference``), so the two cannot disagree.

It imports nothing heavy: the server and the CLI import it as well as the Dagster code.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from housing_platform.config.raw_source import RawSource

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_PATH = PROJECT_ROOT / "data" / "california_housing.csv"
DEFAULT_STATE_DIR = PROJECT_ROOT / ".housing"

# Where `housing-platform serve` listens and `housing-platform simulate` sends traffic by default.
SERVER_HOST = "127.0.0.1"
SERVER_PORT = 8080


class RetrainingPolicy(BaseModel):
    """How often the `retrain_on_drift` sensor may launch a retraining run (the decision: `core/retraining_policy.py`).

    Whoever ticks, a failed check is answered by one run; these limits stop a drift that persists from
    retraining on every hourly evaluation. Set them with ``HOUSING_RETRAINING__<SETTING>`` (below).
    """

    model_config = ConfigDict(frozen=True)

    cooldown_hours: float = Field(
        6.0, ge=0, description="No automatic retraining run is launched until this many hours after the last "
        "retraining run (of any trigger) was launched."
    )
    daily_budget_runs: int = Field(
        3, ge=0, description="At most this many automatic retraining runs are launched per UTC day; 0 stops them."
    )


class HousingSettings(BaseSettings):
    """Where the platform keeps its state, read from ``HOUSING_*`` (and ``MLFLOW_TRACKING_URI``).

    Build it with ``HousingSettings()`` or :meth:`from_env`; keyword arguments win over the
    environment (tests pass ``home=`` and ``data_path=``). URLs left unset are derived from ``home``.
    Empty variables count as unset. A nested model's settings are one variable each, joined by ``__``
    (``HOUSING_RETRAINING__COOLDOWN_HOURS=2``).
    """

    model_config = SettingsConfigDict(
        env_prefix="HOUSING_", env_ignore_empty=True, extra="ignore", env_nested_delimiter="__"
    )

    home: Path = Field(
        DEFAULT_STATE_DIR,
        description="the state folder: Dagster instance, asset storage, artifacts, quarantine, MLflow, "
        "capture store, reports",
    )
    data_path: Path = Field(DEFAULT_DATA_PATH, description="the district CSV read by `raw_housing_data`")
    raw: RawSource = Field(
        default_factory=RawSource,
        description="where `raw_housing_data` reads instead of `HOUSING_DATA_PATH`: a local CSV/Parquet file, "
        "an S3 object or a PostgreSQL table or query, one variable per setting: `HOUSING_RAW__URI`, "
        "`HOUSING_RAW__TABLE`, `HOUSING_RAW__QUERY` (see *Raw data sources* below)",
    )
    monitoring_start_date: str = Field(
        "2026-01-01", pattern=r"^\d{4}-\d{2}-\d{2}$", description="first daily partition of the monitoring assets"
    )
    mlflow_tracking_uri: str = Field(
        "",
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        description="MLflow tracking and registry",
    )
    mlflow_artifact_root: str = Field(
        "", description="where MLflow experiments keep artifacts"
    )
    mlflow_ui_url: str = Field("http://127.0.0.1:5000", description="base of the MLflow links in Dagster metadata")
    capture_url: str = Field(
        "",
        description="capture store, any SQLAlchemy URL (e.g. `postgresql+psycopg2://postgres@127.0.0.1:5432/test`)",
    )
    api_token: SecretStr | None = Field(
        None, description="bearer token `housing-platform simulate` sends when the server requires one "
        "(create it with `housing-platform token create --scope predict --scope feedback`)",
    )
    retraining: RetrainingPolicy = Field(
        default_factory=RetrainingPolicy,
        description="the `retrain_on_drift` sensor's cooldown and daily budget (see *Retraining* below), one "
        "variable per setting: `HOUSING_RETRAINING__<SETTING>`, e.g. `HOUSING_RETRAINING__COOLDOWN_HOURS=2`",
    )

    @classmethod
    def from_env(cls) -> HousingSettings:
        return cls()

    @field_validator("home", "data_path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return Path(value).expanduser().resolve()

    @model_validator(mode="after")
    def _derive_from_home(self) -> HousingSettings:
        # Derived here, once, so no property re-reads the environment later.
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"
        if not self.mlflow_artifact_root:
            self.mlflow_artifact_root = (self.mlflow_dir / "artifacts").as_uri()
        if not self.capture_url:
            self.capture_url = f"sqlite:///{self.home / 'capture' / 'capture.db'}"
        return self

    # Sub-folders of the state folder, one per kind of state. The platform's files (quarantine, reports,
    # artifacts, the fallback baseline) are written through the file store (adapters/file_store.py): at
    # these paths in the embedded profile, at the same keys under s3://<bucket>/<prefix>/ in production.
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
    def tokens_path(self) -> Path:
        """The model server's API tokens, hashed (``adapters/token_store.py``; ``housing-platform token``)."""
        return self.home / "server" / "tokens.json"

    @property
    def fallback_baseline_path(self) -> Path:
        """The champion's heuristic baseline, written at promotion: what the model server answers with
        when it can load no version (``scoring/fallback.py``)."""
        return self.home / "server" / "fallback_baseline.json"

    def ensure_dagster_home(self) -> Path:
        """Create the Dagster instance folder with its ``dagster.yaml`` (SQLite, telemetry off)."""
        from housing_platform.config.dagster_yaml import embedded_dagster_yaml, write_dagster_yaml

        return write_dagster_yaml(self.dagster_home, embedded_dagster_yaml(self.dagster_home))
