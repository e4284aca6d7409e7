"""The golden holdout: a frozen yardstick the gate scores every candidate and the champion on.

The test split moves with the data: appended labelled traffic lands in it (a poisoned label is graded
by the very test rows it poisoned), and a re-scaled raw file rescales it. The golden holdout does not.
It is chosen once, from the **validated base rows only** (the raw CSV, never labelled traffic), as the
rows the stable hash split (:mod:`housing_platform.core.splits`) puts in the test buckets — so no model
of this platform ever trains on them, whatever is appended later — and pinned: the rows (features and
label) are stored with a manifest holding their hashes, and from then on it is verified and read back,
never rebuilt from the current data. Changing the raw file changes neither its rows nor its labels.

Hashes in the manifest:

* ``row_hashes_sha256``: SHA-256 of the sorted ``uint64`` row hashes of :func:`splits.row_hashes`
  (the rows' identities: their feature values);
* ``content_sha256``: SHA-256 of those row hashes together with each row's label as ``float64``
  (the rows and their truth), in the stored order.

:func:`verify_golden_rows` recomputes both from the stored rows, so an edited feature or label, an
added or a removed row is detected and named. Pure pandas and hashlib; the Dagster asset
(`defs/training/golden.py`) stores the files in the state folder.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from housing_platform.core.schema import FEATURE_COLUMNS, TARGET_COLUMN
from housing_platform.core.splits import TEST_BUCKETS, TOTAL_BUCKETS, hash_buckets, row_hashes

ROW_HASH_COLUMN = "row_hash"  # the row's uint64 hash as 16 hex digits (its identity, from the features)
SELECTION = (f"validated base rows whose stable hash bucket (core/splits.py) is in the test buckets "
             f"[0, {TEST_BUCKETS}) of {TOTAL_BUCKETS}: never trained on, never fed by traffic")


class GoldenHoldoutTampered(ValueError):
    """The pinned golden holdout no longer matches its manifest."""


def select_golden_rows(validated: pd.DataFrame) -> pd.DataFrame:
    """The golden rows of a validated base table, in canonical order (by row hash, then label).

    Columns: the features, the label and :data:`ROW_HASH_COLUMN`; a fresh 0..n-1 index.
    """
    rows = validated.loc[hash_buckets(validated) < TEST_BUCKETS, [*FEATURE_COLUMNS, TARGET_COLUMN]]
    rows = rows.assign(**{ROW_HASH_COLUMN: [f"{h:016x}" for h in row_hashes(rows)]})
    return rows.sort_values([ROW_HASH_COLUMN, TARGET_COLUMN], kind="stable").reset_index(drop=True)


def _digests(rows: pd.DataFrame) -> tuple[np.ndarray, str, str]:
    hashes = row_hashes(rows)
    labels = rows[TARGET_COLUMN].to_numpy(dtype=np.float64)
    identities = hashlib.sha256(np.sort(hashes).astype("<u8").tobytes()).hexdigest()
    content = hashlib.sha256(hashes.astype("<u8").tobytes() + labels.astype("<f8").tobytes()).hexdigest()
    return hashes, identities, content


def golden_manifest(rows: pd.DataFrame) -> dict:
    """The hashes that pin ``rows`` (see the module docstring), with the row count and the selection rule."""
    _, identities, content = _digests(rows)
    return {"rows": len(rows), "row_hashes_sha256": identities, "content_sha256": content, "selection": SELECTION}


def verify_golden_rows(rows: pd.DataFrame, manifest: dict) -> None:
    """Raise :class:`GoldenHoldoutTampered`, naming what differs, unless ``rows`` are the pinned rows."""
    problems = []
    if len(rows) != manifest["rows"]:
        problems.append(f"{len(rows):,} rows instead of the pinned {manifest['rows']:,}")
    hashes, identities, content = _digests(rows)
    stored = rows[ROW_HASH_COLUMN].astype(str).to_numpy() if ROW_HASH_COLUMN in rows else None
    recomputed = np.array([f"{h:016x}" for h in hashes], dtype=object)
    if stored is None or len(stored) != len(recomputed) or (stored != recomputed).any():
        changed = len(recomputed) if stored is None or len(stored) != len(recomputed) else int((stored != recomputed).sum())
        problems.append(f"the feature values of {changed:,} rows no longer match their recorded row hash")
    if identities != manifest["row_hashes_sha256"]:
        problems.append(f"the set of rows differs (row hashes sha256 {identities[:12]}… instead of "
                        f"{manifest['row_hashes_sha256'][:12]}…)")
    if content != manifest["content_sha256"]:
        problems.append(f"the rows or their labels differ (content sha256 {content[:12]}… instead of "
                        f"{manifest['content_sha256'][:12]}…)")
    if problems:
        raise GoldenHoldoutTampered("the pinned golden holdout was changed: " + "; ".join(problems))


def label_differences(pinned: pd.DataFrame, validated: pd.DataFrame) -> dict:
    """How the current base data's labels compare with the pinned ones, on the rows both hold (by row hash).

    For the asset's metadata: a re-scaled raw file shows here, while the holdout itself stays as pinned.
    """
    current = select_golden_rows(validated).drop_duplicates(ROW_HASH_COLUMN).set_index(ROW_HASH_COLUMN)[TARGET_COLUMN]
    ours = pinned.drop_duplicates(ROW_HASH_COLUMN).set_index(ROW_HASH_COLUMN)[TARGET_COLUMN]
    common = ours.index.intersection(current.index)
    ratio = current[common] / ours[common]
    return {
        "rows_in_current_data": int(len(common)),
        "rows_missing_from_current_data": int(len(ours) - len(common)),
        "labels_changed_in_current_data": int((ratio != 1.0).sum()),
        "median_label_ratio_current_to_pinned": float(ratio.median()) if len(common) else float("nan"),
    }
