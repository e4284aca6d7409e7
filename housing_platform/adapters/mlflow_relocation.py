"""A state folder that was copied or moved keeps its registry: artifact URIs re-rooted when it is opened.

MLflow records artifact locations as absolute URIs (``file:///old/home/mlflow/artifacts/...`` in
``experiments``, ``runs``, ``logged_models`` and ``model_versions``): a local location is made absolute
when it is stored and no relative form exists (mlflow/mlflow#3144). Copy ``.housing/`` elsewhere and
delete the original, and every version's files are "missing".

:func:`reroot_moved_registry` derives them from the state folder instead, when the embedded registry
is opened (:class:`~housing_platform.adapters.mlflow_registry.ModelRegistry`): if the SQLite database
records an artifact root that sits where the current artifact root sits *relative to the database*
(``<old>/mlflow/artifacts`` for ``<new>/mlflow/mlflow.db`` with the root ``<new>/mlflow/artifacts``),
the folder moved, and that prefix is rewritten to the current root in one transaction. A registry
whose artifact root is configured elsewhere (S3, another disk) is never touched.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote, urlparse

logger = logging.getLogger(__name__)

# (table, column) pairs that hold artifact URIs, in MLflow 3's schema.
URI_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def _file_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def reroot_moved_registry(database: Path, artifact_root: str) -> dict[str, int]:
    """Rewrite artifact URIs recorded under a moved copy of ``artifact_root``; rows changed per column.

    ``database`` is the SQLite tracking database, ``artifact_root`` the ``file://`` root the platform
    uses now. Nothing happens unless the root lies under the database's folder and the database
    records the same layout under another folder.
    """
    root = _file_path(artifact_root.rstrip("/"))
    database = Path(database).resolve()
    if root is None or not database.is_file():
        return {}
    try:
        layout = root.resolve().relative_to(database.parent).as_posix()  # e.g. "artifacts"
    except ValueError:
        return {}  # the artifacts live elsewhere: their URIs do not follow the database
    from sqlalchemy import create_engine, text

    new = artifact_root.rstrip("/")
    engine = create_engine(f"sqlite:///{database}")
    changed: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            tables = {row[0] for row in conn.execute(text("select name from sqlite_master where type = 'table'"))}
            if "experiments" not in tables:
                return {}
            old_roots = set()
            for name, location in conn.execute(text("select name, artifact_location from experiments")):
                path = _file_path(location or "")
                if path is not None and path.name == name and path.parent.as_posix().endswith("/" + layout):
                    old = location[: -len(name) - 1]
                    if old != new:
                        old_roots.add(old)
            for old in sorted(old_roots):
                for table, column in URI_COLUMNS:
                    if table not in tables:
                        continue
                    result = conn.execute(
                        text(f"update {table} set {column} = :new || substr({column}, :n + 1) "
                             f"where substr({column}, 1, :n + 1) = :old || '/' or {column} = :old"),
                        {"new": new, "old": old, "n": len(old)},
                    )
                    if result.rowcount:
                        changed[f"{table}.{column}"] = changed.get(f"{table}.{column}", 0) + result.rowcount
    finally:
        engine.dispose()
    if changed:
        logger.info("the state folder moved: artifact URIs in %s re-rooted at %s (%s)", database, new,
                    ", ".join(f"{k}: {v}" for k, v in changed.items()))
    return changed
