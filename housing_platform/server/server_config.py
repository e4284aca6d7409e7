"""What a model server needs to know: which model, where the registry and the capture store are, limits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from housing_platform.adapters.fallback_store import fallback_baseline_location
from housing_platform.adapters.mlflow_registry import CHAMPION_ALIAS, MODEL_NAME
from housing_platform.config.settings import HousingSettings

DEFAULT_MODEL_URI = f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}"
MAX_ROWS_PER_REQUEST = 10_000


class ServingConfig(BaseModel):
    """Settings of one server process. Build it with :meth:`from_settings` (paths from the environment)."""

    model_uri: str = Field(
        DEFAULT_MODEL_URI,
        description="models:/<name>@<alias> (followed: the alias is polled) or models:/<name>/<version> (fixed).",
    )
    tracking_uri: str = Field(description="MLflow tracking and registry URI.")
    artifact_root: str = Field(description="MLflow artifact root (for a registry created by the server).")
    capture_url: str = Field(description="SQLAlchemy URL of the capture store.")
    poll_interval_seconds: float = Field(
        10.0, ge=0, description="How often the alias is checked; 0 disables polling after the first load."
    )
    load_retry_seconds: float = Field(5.0, gt=0, description="Retry interval while no model could be loaded yet.")
    refused_load_backoff_seconds: float = Field(
        10.0, gt=0,
        description="After a version fails to load (or its fast path is refused), wait this long before loading it "
        "again; the wait doubles with each failed attempt. A new alias target is tried at once.",
    )
    refused_load_backoff_max_seconds: float = Field(
        600.0, gt=0, description="Longest wait between two load attempts of the same refused version."
    )
    capture_sample_percent: float = Field(
        100.0, ge=0, le=100, description="Share of scored rows captured (chosen by request id); 0 switches capture off."
    )
    shadow_sample_percent: float = Field(
        100.0, ge=0, le=100, description="Shadow rollout: share of requests the challenger also scores, off the "
        "response path (chosen at random per request); 0 scores none.",
    )
    capture_queue_rows: int = Field(
        20_000, ge=1,
        description="Bound on capture rows in memory (admitted, queued, being written or retried): past it a predict "
        "request gets 503 with Retry-After before it is answered, so no answered row is dropped. Also what a kill -9 "
        "can lose.",
    )
    capture_overflow: Literal["backpressure", "spill"] = Field(
        "backpressure",
        description="What a predict request gets when capture is at capture_queue_rows: `backpressure` answers 503 "
        "with Retry-After (nothing answered is lost); `spill` answers 200 after writing its rows to an append-only file "
        "in the state folder (`capture_spill_dir`), fsynced before the answer and drained into the store when the "
        "writer catches up and at the next start.",
    )
    capture_spill_dir: str | None = Field(
        None, description="The spill folder (from_settings: `<HOUSING_HOME>/capture/spill`); always drained at start, "
        "written only in spill mode. None: no spill.",
    )
    capture_spill_max_bytes: int = Field(
        1 << 30, ge=1 << 20, description="Spill mode: past this many bytes waiting in the spill folder, a request at the "
        "capture bound gets 503 with Retry-After after all (the disk is bounded too).",
    )
    capture_retry_after_seconds: int = Field(
        1, ge=1, description="Retry-After of the 503 a predict request gets while capture is at its bound."
    )
    capture_batch_rows: int | None = Field(
        None, ge=1, description="Rows per INSERT (SQLite) or COPY (PostgreSQL) of the capture writer; None: the "
        "store's own (`CaptureStore.preferred_batch_rows`: 1,000 for SQLite, 5,000 for PostgreSQL's COPY).",
    )
    failure_flush_seconds: float = Field(
        10.0, gt=0, description="How often the rows a model version could not answer (counted in memory per version) "
        "are written, aggregated, to the capture store's scoring_failures table; also once at shutdown.",
    )
    shutdown_flush_seconds: float = Field(30.0, gt=0, description="Longest wait for the capture flush at shutdown.")
    workers: int = Field(
        1, ge=1, description="Server processes sharing the listening port (`serve --workers N`, uvicorn's supervisor); "
        "each is the whole server with these settings: its own model, alias polling, capture writer and /metrics.",
    )
    worker_healthcheck_seconds: float = Field(
        30.0, gt=0, description="With workers > 1: a worker that does not answer the supervisor's ping within this is "
        "killed and replaced (uvicorn's default is 5 s; a worker importing TensorFlow on a busy machine can take longer, "
        "and a killed worker loses the capture rows in its memory).",
    )
    max_rows_per_request: int = Field(MAX_ROWS_PER_REQUEST, ge=1, description="More rows in one request → 413.")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Larger request bodies → 413.")
    header_read_timeout_seconds: float = Field(
        10.0, gt=0, description="A request's line and headers must arrive within this (from the connection, or the "
        "next request's first byte); else 408 and the connection is closed.",
    )
    body_read_timeout_seconds: float = Field(
        30.0, gt=0, description="A request's body must be complete within this after its headers; else the connection "
        "is closed, nothing scored.",
    )
    keep_alive_timeout_seconds: float = Field(5.0, gt=0, description="An idle keep-alive connection is closed after this.")
    max_connections: int = Field(
        1_000, ge=1, description="Open connections at most (lowered to the open-files limit minus 64); one more is "
        "answered 503 with Retry-After and closed before anything is read.",
    )
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="Larger request line + headers → 431, closed.")
    gil_switch_interval_seconds: float = Field(
        0.001, gt=0, description="sys.setswitchinterval while serving (Python's default is 0.005)."
    )
    blas_threads: int = Field(1, ge=1, description="BLAS threads for the dense layers (process-wide while serving).")
    fallback_on_no_model: bool = Field(
        True,
        description="When no version behind the model URI can be loaded, answer from the champion's heuristic baseline "
        "(median per ocean_proximity, `<HOUSING_HOME>/server/fallback_baseline.json`), each answer flagged "
        "`\"fallback\": true` and `/ready` 200 with `\"degraded\": true`; off: 503 until a version loads.",
    )
    fallback_baseline_path: str | None = Field(
        None, description="The fallback baseline's JSON file or s3:// object (from_settings: the profile's file store: "
        "the state folder, or the bucket); None: no fallback."
    )
    inline_rows: int = Field(
        256, ge=0, description="Requests with more rows are parsed and scored in a worker thread, not the event loop."
    )
    tokens_file: str | None = Field(
        None, description="The API tokens file (from_settings: `<HOUSING_HOME>/server/tokens.json`); None: no tokens. "
        "Authentication is on once it holds a token (`housing-platform token create`).",
    )
    require_tokens: bool = Field(
        False, description="Refuse requests without a valid token even when no token exists (the CLI sets it when "
        "serving on a non-loopback host).",
    )
    tokens_check_interval_seconds: float = Field(
        1.0, gt=0, description="How often the tokens file is checked for changes: a revoke takes effect within this.",
    )
    feedback_rate_per_minute: int = Field(
        1_200, ge=1, description="Labels (feedback items) one token may send in any 60 s, unless the token sets its own "
        "limit; more → 429 with Retry-After. Without authentication there is no limit.",
    )

    @model_validator(mode="after")
    def _backoff_cap_at_least_base(self) -> ServingConfig:
        if self.refused_load_backoff_max_seconds < self.refused_load_backoff_seconds:
            raise ValueError(
                f"refused_load_backoff_max_seconds ({self.refused_load_backoff_max_seconds:g}) must be at least "
                f"refused_load_backoff_seconds ({self.refused_load_backoff_seconds:g})"
            )
        return self

    @classmethod
    def from_settings(cls, settings: HousingSettings | None = None, **overrides) -> ServingConfig:
        settings = settings or HousingSettings.from_env()
        values = {
            "tracking_uri": settings.mlflow_tracking_uri,
            "artifact_root": settings.mlflow_artifact_root,
            "capture_url": settings.capture_url,
            "tokens_file": str(settings.tokens_path),
            # the state folder's file, or the bucket's object in the production profile (adapters/fallback_store.py)
            "fallback_baseline_path": fallback_baseline_location(settings),
            "capture_spill_dir": str(settings.home / "capture" / "spill"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def serving_default(name: str):
    """The default of a :class:`ServingConfig` field, for the server modules that take it as a parameter."""
    return ServingConfig.model_fields[name].default
