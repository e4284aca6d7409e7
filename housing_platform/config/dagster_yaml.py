"""The Dagster instance's ``dagster.yaml`` for each profile, rendered by one function.

Both profiles share everything but the storage and compute-log blocks: local artifacts under
``DAGSTER_HOME``, telemetry and the "new user experience" off. The embedded profile keeps runs and
event logs in SQLite and step logs in files inside the state folder; the production profile keeps
them in PostgreSQL and the S3 bucket (``profiles.dagster_yaml_for_production`` builds both blocks). The file is written only when
its content changes, so a running ``dagster dev`` is not disturbed by ``housing-platform init``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HEADER = """\
# Written by housing_platform.config.dagster_yaml ({profile} profile); rerun `housing-platform init`
# (or change HOUSING_HOME) instead of editing. {storage_note}
"""
EMBEDDED_NOTE = "Runs and event logs live in SQLite inside the state folder."
PRODUCTION_NOTE = (
    "Runs, event logs and schedules live in PostgreSQL; the password,\n# if any, is read from the "
    "environment variable named below and never stored in this file."
)


def render_dagster_yaml(
    storage: dict[str, Any],
    dagster_home: str | Path,
    *,
    profile: str,
    storage_note: str,
    compute_logs: dict[str, Any] | None = None,
) -> str:
    """``dagster.yaml`` with the given ``storage`` block (and ``compute_logs``, local by default)."""
    home = Path(dagster_home)
    config = {
        "storage": storage,
        "local_artifact_storage": {
            # Module paths are how dagster.yaml names Dagster's own classes (configuration, not imports).
            "module": "dagster._core.storage.root",
            "class": "LocalArtifactStorage",
            "config": {"base_dir": str(home)},
        },
        "compute_logs": compute_logs
        or {
            "module": "dagster._core.storage.local_compute_log_manager",
            "class": "LocalComputeLogManager",
            "config": {"base_dir": str(home / "logs")},
        },
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
    }
    header = HEADER.format(profile=profile, storage_note=storage_note)
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def embedded_dagster_yaml(dagster_home: str | Path) -> str:
    """The embedded profile: SQLite storage in ``<dagster_home>/storage``."""
    storage = {"sqlite": {"base_dir": str(Path(dagster_home) / "storage")}}
    return render_dagster_yaml(storage, dagster_home, profile="embedded", storage_note=EMBEDDED_NOTE)


def write_dagster_yaml(dagster_home: str | Path, content: str) -> Path:
    """Write ``content`` to ``<dagster_home>/dagster.yaml`` if it differs; return the folder."""
    home = Path(dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() != content:
        config.write_text(content)
    return home
