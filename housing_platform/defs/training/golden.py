"""The golden holdout asset: chosen once from the validated base data, pinned, then only verified.

The first materialization selects the rows (`core/golden_holdout.py`: the base rows of the test hash
buckets, never labelled traffic) and pins them in the state folder, `<state>/golden_holdout/`: the rows
as Parquet and `manifest.json` with their hashes (paths in it are relative to that folder, so the state
folder can move); in the production profile the two files are objects under
`s3://<bucket>/<prefix>/golden_holdout/` (the file store), so every host verifies the same pin. Every
later materialization reads the pinned rows, verifies them against the manifest and against the content
hash its own last materialization recorded in the Dagster instance, and returns them unchanged; a
changed raw file changes neither the rows nor their labels (the metadata says how the current data's
labels compare). Tampering fails the run, naming what differs, and with it the gate (`evaluation_report`
depends on this asset). To choose a new holdout deliberately, delete the folder (the objects, in
production): the next run pins afresh and records the content hash it replaced.
"""

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from housing_platform.adapters.file_store import FileStore
from housing_platform.core.golden_holdout import (
    GoldenHoldoutTampered,
    golden_manifest,
    label_differences,
    select_golden_rows,
    verify_golden_rows,
)
from housing_platform.core.metrics import regression_metrics
from housing_platform.core.schema import TARGET_COLUMN
from housing_platform.defs.code_versions import asset_code_version
from housing_platform.defs.metadata import COUNT, DOLLARS, SCORE, number_metadata, numbers_metadata
from housing_platform.defs.resources import HousingStateResource

GOLDEN_FOLDER = "golden_holdout"  # under the state folder
ROWS_FILE = "golden_holdout.parquet"
MANIFEST_FILE = "manifest.json"
CONTENT_KEY = "content_sha256"


def golden_folder(home: str | Path) -> Path:
    return Path(home) / GOLDEN_FOLDER


def _recorded_content_hash(context: dg.AssetExecutionContext) -> str | None:
    """The content hash this asset's last materialization recorded in the instance (None if never)."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get(CONTENT_KEY)
    return getattr(value, "value", value)


def _pin(files: FileStore, rows: pd.DataFrame, run_id: str) -> dict:
    manifest = {**golden_manifest(rows), "file": ROWS_FILE, "pinned_at": datetime.now(UTC).isoformat(),
                "pinned_by_run": run_id}
    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    files.write_bytes(f"{GOLDEN_FOLDER}/{ROWS_FILE}", buffer.getvalue())
    # last: the pin is complete
    files.write_text(f"{GOLDEN_FOLDER}/{MANIFEST_FILE}", json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


@dg.asset(
    group_name="training",
    kinds={"pandas"},
    owners=["team:ml-platform"],
    code_version=asset_code_version("golden_holdout"),
    tags={"stage": "evaluation"},
)
def golden_holdout(
    context: dg.AssetExecutionContext, housing_state: HousingStateResource, validated_housing_data: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    """The frozen yardstick of the gate: base districts pinned by hash when first created, never fed by traffic.

    Rows of the validated raw data whose stable hash puts them in the test buckets (no model trains on
    them), pinned in `<state>/golden_holdout/` with their row hashes and a content hash. Later runs verify
    the pinned rows and return them unchanged — a new raw file does not move them — and fail, naming the
    difference, if they were edited. `evaluation_report` scores the candidate and the champion on them
    (gate check `no_regression_on_golden_holdout`).
    """
    files = housing_state.files()
    folder = files.uri(GOLDEN_FOLDER)
    recorded = _recorded_content_hash(context)
    replaced = None
    manifest_text = files.read_text(f"{GOLDEN_FOLDER}/{MANIFEST_FILE}")
    if manifest_text is not None:
        manifest = json.loads(manifest_text)
        body = files.read_bytes(f"{GOLDEN_FOLDER}/{manifest['file']}")
        if body is None:
            raise dg.Failure(description=f"{folder}: the manifest names {manifest['file']}, which is missing")
        rows = pd.read_parquet(io.BytesIO(body))
        try:
            verify_golden_rows(rows, manifest)
        except GoldenHoldoutTampered as error:
            raise dg.Failure(description=f"{folder}: {error}") from error
        if recorded is not None and recorded != manifest[CONTENT_KEY]:
            raise dg.Failure(description=(
                f"{folder}: the pinned golden holdout was replaced: its content sha256 is {manifest[CONTENT_KEY]}, "
                f"the last materialization recorded {recorded}. Delete the folder to pin a new holdout on purpose."))
        created = False
    else:
        rows = select_golden_rows(validated_housing_data)
        if rows.empty:
            raise dg.Failure(description="no validated base row falls in the test buckets: nothing to pin")
        manifest = _pin(files, rows, context.run.run_id)
        created, replaced = True, recorded
        context.log.warning(f"pinned a new golden holdout of {len(rows):,} rows in {folder}"
                            + (f" (replacing content sha256 {recorded})" if recorded else ""))
    differences = label_differences(rows, validated_housing_data)
    return dg.Output(
        rows,
        data_version=dg.DataVersion(manifest[CONTENT_KEY]),
        metadata={
            **number_metadata("row_count", len(rows), COUNT),
            CONTENT_KEY: manifest[CONTENT_KEY],
            "row_hashes_sha256": manifest["row_hashes_sha256"],
            "pinned_at": manifest["pinned_at"],
            "pinned_in_this_run": created,
            "replaced_content_sha256": replaced or "none",
            "path": dg.MetadataValue.path(files.uri(f"{GOLDEN_FOLDER}/{manifest['file']}")),
            "selection": manifest["selection"],
            **number_metadata("label_mean", float(rows[TARGET_COLUMN].mean()), DOLLARS),
            **numbers_metadata({name: (value, SCORE if isinstance(value, float) else COUNT)  # the ratio, the counts
                                for name, value in differences.items()}),
        },
    )


def golden_comparison(golden: pd.DataFrame, candidate: np.ndarray, champion: np.ndarray | None,
                      content_sha256: str | None = None) -> dict:
    """The report's ``golden_holdout`` entry: candidate (and champion) metrics on the pinned rows."""
    truth = golden[TARGET_COLUMN].to_numpy()
    return {
        "rows": len(golden),
        "content_sha256": content_sha256 or golden_manifest(golden)[CONTENT_KEY],
        "metrics": regression_metrics(truth, candidate),
        "champion_metrics": regression_metrics(truth, np.asarray(champion)) if champion is not None else None,
    }
