"""The data profile: statistics a person can check by hand, three PNG plots, and the asset that records them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from housing_platform.config.settings import HousingSettings
from housing_platform.core import data_profile as profiling
from housing_platform.defs.ingestion import assets as ingestion
from housing_platform.defs.io_manager import ParquetJsonIOManager
from housing_platform.defs.resources import HousingStateResource
from housing_platform_tests.factories import make_districts

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_statistics_match_pandas_for_every_column(districts: pd.DataFrame) -> None:
    frame = districts.copy()
    frame.loc[[3, 7, 11], "total_bedrooms"] = np.nan
    table = profiling.column_statistics(frame).set_index("column")

    assert list(table.index) == list(frame.columns)
    assert list(table.reset_index().columns) == list(profiling.STATISTICS_COLUMNS)
    bedrooms = table.loc["total_bedrooms"]
    assert bedrooms["count"] == len(frame) - 3 and bedrooms["nulls"] == 3
    assert bedrooms["null_share"] == pytest.approx(3 / len(frame))
    described = frame["total_bedrooms"].describe()
    for ours, theirs in (("mean", "mean"), ("std", "std"), ("min", "min"), ("p25", "25%"), ("p50", "50%"),
                         ("p75", "75%"), ("max", "max")):
        assert bedrooms[ours] == pytest.approx(described[theirs]), ours
    assert table.loc["median_income", "distinct"] == frame["median_income"].nunique()


def test_the_category_gets_counts_and_distinct_values_but_no_numeric_statistics(districts: pd.DataFrame) -> None:
    ocean = profiling.column_statistics(districts).set_index("column").loc["ocean_proximity"]
    assert ocean["count"] == len(districts) and ocean["nulls"] == 0
    assert ocean["distinct"] == districts["ocean_proximity"].nunique() == 4
    assert all(np.isnan(ocean[name]) for name in ("mean", "std", "min", "p25", "p50", "p75", "max"))


def test_an_empty_frame_gives_zero_counts_not_an_error() -> None:
    table = profiling.column_statistics(make_districts().head(0)).set_index("column")
    assert (table["count"] == 0).all() and (table["distinct"] == 0).all()
    assert table["mean"].isna().all()


def test_correlations_rank_the_price_driver_first(districts: pd.DataFrame) -> None:
    correlations = profiling.target_correlations(districts)
    assert list(correlations.columns) == list(profiling.CORRELATION_COLUMNS)
    # make_districts builds the price from median_income: it must come out on top.
    assert correlations.iloc[0]["feature"] == "median_income"
    assert correlations.iloc[0]["pearson"] == pytest.approx(
        districts["median_income"].corr(districts["median_house_value"])
    )
    assert "ocean_proximity=INLAND" in set(correlations["feature"])
    assert correlations["pearson"].abs().is_monotonic_decreasing
    assert correlations[["pearson", "spearman"]].abs().le(1.0).all().all()


def test_an_absent_or_constant_column_is_left_out_of_the_correlations(districts: pd.DataFrame) -> None:
    frame = districts.assign(housing_median_age=20.0)
    features = set(profiling.target_correlations(frame)["feature"])
    assert "housing_median_age" not in features
    assert "ocean_proximity=ISLAND" not in features  # make_districts never draws ISLAND


def test_the_three_plots_are_written_as_png(tmp_path: Path, districts: pd.DataFrame) -> None:
    paths = profiling.write_profile_plots(districts, tmp_path / "profile")
    assert set(paths) == set(profiling.PLOT_FILES)
    for name, path in paths.items():
        assert path == tmp_path / "profile" / profiling.PLOT_FILES[name]
        assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 5_000, name


def materialize_profile(settings: HousingSettings, csv: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """raw → validated → profile for ``csv``, stored in ``settings``' state folder."""
    resources = {
        "housing_state": HousingStateResource(home=str(settings.home), data_path=str(csv)),
        "io_manager": ParquetJsonIOManager(base_dir=str(settings.storage_dir)),
    }
    return dg.materialize(
        [ingestion.raw_housing_data, ingestion.validated_housing_data, ingestion.housing_data_profile],
        instance=instance,
        resources=resources,
        # make_districts draws 200 rows; the row-count rule of the data gate is not under test here.
        run_config={"ops": {"validated_housing_data": {"config": {"min_rows": 100}}}},
    )


def test_profile_asset_records_statistics_plots_and_schema(housing_settings: HousingSettings, districts_csv: Path) -> None:
    with dg.instance_for_test() as instance:
        result = materialize_profile(housing_settings, districts_csv, instance)
        assert result.success
        metadata = result.asset_materializations_for_node("housing_data_profile")[0].metadata
        stored = instance.get_latest_materialization_event(dg.AssetKey("housing_data_profile"))

    assert metadata["profiled_rows_raw"].value == 200
    assert metadata["strongest_feature"].value == "median_income"
    assert "median_house_value" in metadata["statistics"].value
    assert metadata["plots"].value.count("data:image/png;base64,") == 3
    assert "dagster/column_schema" in metadata
    folder = Path(metadata["plots_folder"].value)
    assert folder == housing_settings.reports_dir / "profile" / result.run_id
    assert sorted(p.name for p in folder.iterdir()) == sorted(profiling.PLOT_FILES.values())
    assert stored is not None

    value = pd.read_parquet(housing_settings.storage_dir / "housing_data_profile.parquet")
    assert list(value["column"]) == list(pd.read_csv(districts_csv).columns)


def test_the_profile_describes_the_validated_rows_not_the_raw_file(
    housing_settings: HousingSettings, tmp_path: Path, districts: pd.DataFrame
) -> None:
    """A quarantined row is not profiled: the profile is of what a model would be trained on."""
    districts.loc[0, "median_income"] = 99.0  # breaks median_income < 16: quarantined
    csv = tmp_path / "with_a_bad_row.csv"
    districts.to_csv(csv, index=False)
    with dg.instance_for_test() as instance:
        result = materialize_profile(housing_settings, csv, instance)
    assert result.success
    metadata = result.asset_materializations_for_node("housing_data_profile")[0].metadata
    assert metadata["profiled_rows_raw"].value == len(districts) - 1
    statistics = pd.read_parquet(housing_settings.storage_dir / "housing_data_profile.parquet").set_index("column")
    assert statistics.loc["median_income", "max"] == pytest.approx(districts["median_income"].iloc[1:].max())
    assert statistics.loc["median_income", "count"] == len(districts) - 1
