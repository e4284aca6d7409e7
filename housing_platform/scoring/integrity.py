"""Are a registered version's model files the ones that were registered? sha256 of every file.

At registration (:meth:`housing_platform.adapters.mlflow_registry.ModelRegistry.log_and_register`) the
files of the logged model — the code, ``MLmodel``, the skops transformer, the ``.keras`` network, the
JSON config and ranges, the requirements — are hashed as they were stored and the manifest
``{relative path: sha256}`` is recorded in the registry as the version tag :data:`FILES_SHA256_TAG`.
Before a version is served or batch-scored (:func:`housing_platform.scoring.verification.load_fast_scorer`)
its files are downloaded and checked against that record *before anything is deserialised*: a file
changed, missing or added raises :class:`ArtifactIntegrityError` naming the file and both hashes, and
the version is refused (the server keeps the version it serves).

The record lives in the registry database, not beside the files, so rewriting a file in the artifact
store is seen even by someone who could also rewrite a manifest stored there. Versions registered
before the manifest existed are checked against the hashes they did record (``model_sha256`` of the
network, ``transformer_sha256``); a version recording no hash at all is refused as unverifiable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from housing_platform.scoring.errors import ScoringError

FILES_SHA256_TAG = "model_files_sha256"  # JSON {path relative to the model folder: sha256}, set at registration
# Hashes recorded before the manifest existed: tag -> the suffix of the one file it names.
SINGLE_FILE_TAGS = {"model_sha256": ".keras", "transformer_sha256": ".skops"}
# Written by MLflow into the folder when it downloads a *registered* version (its name and number):
# not a model file, and not there when the manifest is made.
DOWNLOAD_MARKERS = frozenset({"registered_model_meta"})


class ArtifactIntegrityError(ScoringError):
    """A model file differs from what the registry recorded for its version (or nothing was recorded)."""


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(folder: str | Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (but MLflow's :data:`DOWNLOAD_MARKERS`), keyed by its POSIX
    path relative to ``folder``."""
    folder = Path(folder)
    return {
        path.relative_to(folder).as_posix(): sha256_of(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() not in DOWNLOAD_MARKERS
    }


def manifest_tag(folder: str | Path) -> str:
    """The :data:`FILES_SHA256_TAG` value for the model files in ``folder`` (compact JSON)."""
    return json.dumps(file_hashes(folder), sort_keys=True, separators=(",", ":"))


def verify_model_files(folder: str | Path, tags: Mapping[str, str], what: str) -> int:
    """Check the files in ``folder`` against the hashes in the version's ``tags``; the number checked.

    Raises :class:`ArtifactIntegrityError` naming ``what`` (the model URI), the file and both hashes.
    """
    found = file_hashes(folder)
    recorded = tags.get(FILES_SHA256_TAG)
    if recorded:
        try:
            expected = json.loads(recorded)
        except ValueError as error:
            raise ArtifactIntegrityError(f"{what}: the tag {FILES_SHA256_TAG} is not JSON ({error})") from error
        problems = [
            f"{name}: sha256 {digest} recorded, "
            + (f"{found[name]} found" if name in found else "the file is missing")
            for name, digest in sorted(expected.items())
            if found.get(name) != digest
        ]
        problems += [f"{name}: not recorded at registration (sha256 {found[name]})"
                     for name in sorted(set(found) - set(expected))]
        if problems:
            raise ArtifactIntegrityError(
                f"{what}: model files differ from what the registry recorded: {'; '.join(problems)}"
            )
        return len(expected)
    checked = 0
    for tag, suffix in SINGLE_FILE_TAGS.items():
        if not tags.get(tag):
            continue
        matches = [name for name in found if name.endswith(suffix)]
        if len(matches) != 1:
            raise ArtifactIntegrityError(
                f"{what}: the tag {tag} names one {suffix} file, found {len(matches)}: {', '.join(matches) or 'none'}"
            )
        if found[matches[0]] != tags[tag]:
            raise ArtifactIntegrityError(
                f"{what}: model files differ from what the registry recorded: "
                f"{matches[0]}: sha256 {tags[tag]} recorded, {found[matches[0]]} found"
            )
        checked += 1
    if not checked:
        raise ArtifactIntegrityError(
            f"{what}: the version records no file hashes (tag {FILES_SHA256_TAG}), so its files cannot be "
            "verified; register it again"
        )
    return checked
