"""The champion's fallback baseline in the file store: written at every promotion, read by the model server.

One JSON file, ``server/fallback_baseline.json`` in the file store (``adapters/file_store.py``): the
state folder's ``<HOUSING_HOME>/server/fallback_baseline.json`` in the embedded profile,
``s3://<bucket>/<prefix>/server/fallback_baseline.json`` in the production one, so a replica on a new
host finds the baseline of the champion another host promoted. What it holds and how it scores:
``scoring/fallback.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from housing_platform.adapters.file_store import S3_SCHEME, FileStore, FileStoreError, file_store_for
from housing_platform.config.settings import HousingSettings
from housing_platform.scoring.errors import ScoringError
from housing_platform.scoring.fallback import FallbackScorer

FALLBACK_KEY = "server/fallback_baseline.json"


def store_fallback_baseline(files: FileStore, baseline: dict) -> str:
    """Write ``baseline`` (readers never see half a file); return where it went."""
    return files.write_text(FALLBACK_KEY, json.dumps(baseline, indent=2, sort_keys=True))


def fallback_baseline_location(settings: HousingSettings, environ: Mapping[str, str] | None = None) -> str:
    """Where the active profile keeps the fallback baseline: a path in the state folder, or its S3 URI."""
    return file_store_for(settings, environ).uri(FALLBACK_KEY)


def read_fallback_baseline(location: str | Path, settings: HousingSettings | None = None) -> FallbackScorer:
    """The baseline at ``location`` (a local path, or an ``s3://`` URI of the active profile's bucket).

    ScoringError naming the location when it is missing, unreadable or malformed."""
    if not str(location).startswith(f"{S3_SCHEME}://"):
        return FallbackScorer.read(location)
    store = file_store_for(settings or HousingSettings.from_env())
    try:
        key = store.key_of(location)
        if key is None:
            raise FileStoreError(f"{location} is not in the profile's file store ({store!r})")
        body = store.read_bytes(key)
    except Exception as error:  # the bucket unreachable, credentials refused: the server starts without fallback
        raise ScoringError(f"fallback baseline {location}: cannot be read ({type(error).__name__}: {error})") from error
    if body is None:
        raise ScoringError(f"no fallback baseline at {location}")
    try:
        value = json.loads(body)
    except ValueError as error:
        raise ScoringError(f"fallback baseline {location}: cannot be read ({type(error).__name__}: {error})") from error
    return FallbackScorer.from_dict(value, str(location))
