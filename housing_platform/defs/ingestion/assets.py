"""Ingestion: read the raw districts (file, S3 or PostgreSQL) and pass them through the data gate.

``raw_housing_data`` → ``validated_housing_data`` (with four blocking checks). Nothing downstream of
the gate runs in a run where one of its checks fails.
"""

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pandas as pd

from housing_platform.adapters.raw_sources import read_raw_source
from housing_platform.config.raw_source import RawSourceError
from housing_platform.core.validation import (
    StructuralValidationError,
    UnreadableDataError,
    evaluate_data_gate,
    validate_housing_frame,
)
from housing_platform.defs.code_versions import asset_code_version
from housing_platform.defs.ingestion.checks import VALUE_KINDS, validation_check_specs
from housing_platform.defs.ingestion.config import ValidationGateConfig
from housing_platform.defs.metadata import (
    COUNT,
    DOLLARS,
    SCORE,
    SHARE,
    column_schema_metadata,
    markdown_table,
    number_metadata,
    numbers_metadata,
)
from housing_platform.defs.resources import HousingStateResource

GROUP = "ingestion"
QUARANTINE_FOLDER = "quarantine"  # file-store key folder (adapters/file_store.py)
OWNERS = ["team:ml-platform"]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "csv"},
    owners=OWNERS,
    code_version=asset_code_version("raw_housing_data"),
    tags={"stage": "ingestion"},
)
def raw_housing_data(context: dg.AssetExecutionContext, housing_state: HousingStateResource) -> dg.Output[pd.DataFrame]:
    """The raw districts exactly as stored: one row per 1990 California census block group.

    Reads the file configured by `HOUSING_DATA_PATH` (default `data/california_housing.csv`), or
    where `HOUSING_RAW__URI` points: a local CSV/Parquet file, an `s3://` object, or a PostgreSQL
    table (`HOUSING_RAW__TABLE`) or query (`HOUSING_RAW__QUERY`). No value is changed. Its **data
    version is the SHA-256 of the content** (column names and values, not the bytes that carry them),
    so the same data read from any of these gives the same version, and when the data changes every
    downstream asset shows as stale in the UI until it is rematerialized. Nothing is validated here;
    see `validated_housing_data`.
    """
    try:
        raw = read_raw_source(housing_state.raw_source, housing_state.data_path, housing_state.s3_client)
    except (UnreadableDataError, RawSourceError) as error:
        raise dg.Failure(description=f"Cannot read the district data: {error}", allow_retries=False) from None
    frame, sha = raw.frame, raw.content_sha256
    context.log.info(f"Read {len(frame):,} rows × {frame.shape[1]} columns from {raw.location} (content sha256 {sha[:12]})")
    location = (
        {"path": dg.MetadataValue.path(raw.location)}
        if housing_state.raw_source.kind in (None, "file")
        else {"source": raw.location}
    )
    return dg.Output(
        frame,
        data_version=dg.DataVersion(sha),
        metadata={
            **location,
            "content_sha256": sha,
            "sha256": raw.bytes_sha256 or "none (read from a database)",
            **numbers_metadata({"row_count": (len(frame), COUNT), "column_count": (frame.shape[1], COUNT)}),
            "preview": markdown_table(frame),
            **column_schema_metadata(frame),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "pandera"},
    owners=OWNERS,
    code_version=asset_code_version("validated_housing_data", ValidationGateConfig),
    tags={"stage": "ingestion"},
    check_specs=validation_check_specs(),
)
def validated_housing_data(
    context: dg.AssetExecutionContext,
    config: ValidationGateConfig,
    housing_state: HousingStateResource,
    raw_housing_data: pd.DataFrame,
):
    """District rows that pass the pandera schema `HousingDistricts`: the data gate.

    Every rule lives in `housing_platform/core/schema.py` (the single source of truth, also used by the
    serving API): required columns and types, coordinates inside California, positive counts,
    `total_bedrooms <= total_rooms`, `households <= population`, `median_income` in (0, 16),
    `median_house_value` in [10,000, 500,001], a known `ocean_proximity`, nulls only in
    `total_bedrooms`. Validation is lazy, so every failure is reported at once.

    * A **structural** failure (missing column, unparseable type) fails the materialization with a
      message naming the column and rule.
    * **Row-level** failures move the offending rows to a quarantine CSV under
      `<state>/quarantine/` (`s3://<bucket>/<prefix>/quarantine/` in the production profile), each
      with the rules it broke; the valid rows flow on.

    Four **blocking** checks follow; if one fails, nothing downstream runs in the same run.
    """
    try:
        outcome = validate_housing_frame(raw_housing_data)
    except StructuralValidationError as error:
        raise dg.Failure(
            description=str(error),
            metadata={"failures": markdown_table(error.failures, rows=50)},
            allow_retries=False,
        ) from None

    quarantine_path = None
    if len(outcome.quarantine):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        files = housing_state.files()  # the state folder, or the bucket in the production profile
        key = f"{QUARANTINE_FOLDER}/validated_housing_data_{stamp}_{context.run.run_id[:8]}.csv"
        quarantine_path = files.write_bytes(key, outcome.quarantine.to_csv(index=False).encode("utf-8"))
        context.log.warning(f"Quarantined {len(outcome.quarantine):,} rows → {quarantine_path}")
    if outcome.extra_columns:
        context.log.warning(f"Ignoring columns not in the schema: {', '.join(outcome.extra_columns)}")

    context.log.info(f"{len(outcome.valid):,} valid rows, {len(outcome.quarantine):,} quarantined")
    yield dg.Output(
        outcome.valid,
        metadata={
            **numbers_metadata({"row_count": (len(outcome.valid), COUNT),
                                "quarantined_rows": (len(outcome.quarantine), COUNT)}),
            **number_metadata("quarantine_share", outcome.quarantine_share, SHARE),
            "quarantine_path": dg.MetadataValue.path(quarantine_path) if quarantine_path else "none",
            "failed_rules": markdown_table(outcome.summary, rows=50) if len(outcome.summary) else "none",
            "quarantine_preview": markdown_table(outcome.quarantine) if len(outcome.quarantine) else "none",
            "ignored_columns": ", ".join(outcome.extra_columns) or "none",
            "preview": markdown_table(outcome.valid),
            **column_schema_metadata(outcome.valid),
        },
    )

    for result in evaluate_data_gate(outcome, config.to_limits()):
        yield dg.AssetCheckResult(
            check_name=result.name,
            passed=result.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=result.description,
            metadata=numbers_metadata({"value": (result.value, VALUE_KINDS[result.name]),
                                       "limit": (result.limit, VALUE_KINDS[result.name])}),
        )


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "matplotlib"},
    owners=OWNERS,
    code_version=asset_code_version("housing_data_profile"),
    tags={"stage": "ingestion"},
)
def housing_data_profile(
    context: dg.AssetExecutionContext, housing_state: HousingStateResource, validated_housing_data: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    """A profile of the validated districts to read before trusting a model trained on them.

    Per column: count, nulls, mean, standard deviation, minimum, quartiles, maximum and the number of
    distinct values (the one statistic of `ocean_proximity`). Three plots are embedded below and saved
    under `<state>/reports/profile/<run id>/` (`s3://<bucket>/<prefix>/reports/profile/<run id>/` in the
    production profile): a histogram per column (note the caps at 500,001 USD and 52 years), the Pearson
    and Spearman correlation of each feature and each `ocean_proximity`
    category with `median_house_value` as a heatmap, and the districts on a map coloured by price.
    The value is the statistics table: `defs.load_asset_value("housing_data_profile")`. The logic is
    plain Python in `housing_platform/core/data_profile.py`.
    """
    # Imported here so loading the code location does not pay for matplotlib.
    from housing_platform.core import data_profile as profiling
    from housing_platform.defs.metadata import png_markdown

    statistics = profiling.column_statistics(validated_housing_data)
    correlations = profiling.target_correlations(validated_housing_data)
    files = housing_state.files()
    key = f"reports/profile/{context.run.run_id}"
    plots = profiling.write_profile_plots(validated_housing_data, files.local_folder(key), correlations)
    files.publish_folder(key, plots)
    folder = files.uri(key)
    strongest = correlations.iloc[0] if len(correlations) else None
    context.log.info(f"Profiled {len(validated_housing_data):,} rows; plots in {folder}")
    return dg.Output(
        statistics,
        metadata={
            **numbers_metadata({
                "profiled_rows": (len(validated_housing_data), COUNT),
                "column_count": (validated_housing_data.shape[1], COUNT),
                "null_cells": (int(statistics["nulls"].sum()), COUNT),
                "target_mean": (float(validated_housing_data["median_house_value"].mean()), DOLLARS),
                "target_median": (float(validated_housing_data["median_house_value"].median()), DOLLARS),
            }),
            "strongest_feature": str(strongest["feature"]) if strongest is not None else "none",
            **number_metadata("strongest_pearson", float(strongest["pearson"]) if strongest is not None else None, SCORE),
            "statistics": markdown_table(statistics, rows=50),
            "target_correlations": markdown_table(correlations, rows=50, floatfmt="+.3f"),
            "plots": png_markdown(
                {
                    "Histograms": plots["histograms"],
                    "Correlation with median_house_value": plots["target_correlation"],
                    "Price by location": plots["location_price"],
                }
            ),
            "plots_folder": dg.MetadataValue.path(folder),
            **column_schema_metadata(statistics),
        },
    )
