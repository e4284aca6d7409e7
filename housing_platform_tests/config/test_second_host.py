"""Two hosts of the production profile: what one materializes, a second one with an empty state folder uses.

Everything real and on loopback: the profile's PostgreSQL databases (the Dagster instance, the capture
store, MLflow's backend store), moto's S3 server and an `mlflow server` started with the profile's
command line. Host A materializes ingestion → training → the registered champion on a small CSV with a
few rows the data gate quarantines, serves the champion in process (the real app) and materializes the
day's monitoring partition (the drift report). Then host A's state folder is **deleted**, and host B,
with the same profile variables and a new, empty state folder, serves the champion (its answers name
the champion's version, its fallback baseline is the bucket's), materializes the same day's monitoring
partition and the drift history, and re-runs `evaluation_report` from the model files host A's run
left in the bucket. Every file either host wrote for the other is in the bucket.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from housing_platform.config.profiles import ProductionSettings, write_production_dagster_yaml
from housing_platform.config.runtime import process_settings
from housing_platform.config.settings import HousingSettings
from housing_platform.core.schema import FEATURE_COLUMNS
from housing_platform.devtools import loop
from housing_platform.devtools.processes import NotReady, free_port, wait_until
from housing_platform.devtools.tiny_models import records
from housing_platform_tests.config.services import MlflowTrackingServer, bucket_keys, production_profile, s3_client
from housing_platform_tests.factories import make_districts

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

S3_BUCKET = "housing-hosts-test"
S3_PREFIX = "hosts"
DISTRICTS = 1_200
BAD_ROWS = 4  # median_income outside (0, 16): quarantined by the data gate, the rest flow on
REQUEST_ROWS, REQUESTS = 50, 4  # per host: 200 captured rows each, enough for a drift report
READY_SECONDS = 120.0  # the first load of the champion through the tracking server, on a busy 2-core machine
# A few epochs and gate limits every model meets: the test is about where files go, not how good the model is
# (the gate's own rules are tested in core/test_model_gate.py).
ACCEPTING_GATE = {"config": {
    "max_rmse_dollars": 1e12, "min_improvement_over_baseline": -1e6, "max_regression_vs_champion": 1e6,
    "max_slice_rmse_ratio": 1e6, "max_golden_regression_vs_champion": 1e6,
}}
EVALUATION = {**loop.QUIET_LOGS, "ops": {"evaluation_report": ACCEPTING_GATE}}
TRAINING = {
    **loop.SMALL_TRAINING,
    "ops": {
        **loop.SMALL_TRAINING["ops"],
        "evaluation_report": ACCEPTING_GATE,
    },
}


@pytest.fixture(scope="module")
def production(postgres_server, moto_endpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("two_hosts")
    port = free_port()
    caches = root / "library-caches"  # process-wide library caches: outside both state folders
    with production_profile(
        postgres_server, moto_endpoint, root, bucket=S3_BUCKET, prefix=S3_PREFIX,
        HOUSING_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}", HOUSING_HOME=str(root / "host-a"),
        MPLCONFIGDIR=str(caches / "matplotlib"), KERAS_HOME=str(caches / "keras"),
    ) as settings:
        districts = make_districts(DISTRICTS, seed=3)
        bad = districts.head(BAD_ROWS).assign(median_income=99.0)
        pd.concat([districts, bad], ignore_index=True).to_csv(settings.housing.data_path, index=False)
        with MlflowTrackingServer(root, settings, port):
            yield settings, root, districts


class Host:
    """One host of the profile: its state folder, its definitions and its Dagster instance (PostgreSQL)."""

    def __init__(self, home: Path):
        os.environ["HOUSING_HOME"] = str(home)  # the only variable that differs between hosts
        from housing_platform.defs.definitions import build_definitions

        self.home = home
        self.settings = process_settings()
        self.defs = build_definitions(HousingSettings.from_env())
        dagster_home = write_production_dagster_yaml(ProductionSettings.from_env(HousingSettings.from_env()))
        self.instance = dg.DagsterInstance.from_config(str(dagster_home))

    def serve(self, rows: pd.DataFrame) -> tuple[dict, list[dict]]:
        """The real app with this host's serving config: /ready once the model is loaded (with where its
        fallback baseline came from, as ``fallback``), then the answers."""
        from housing_platform.server.app import create_app
        from housing_platform.server.server_config import ServingConfig

        config = ServingConfig.from_settings(self.settings, poll_interval_seconds=0)
        with TestClient(create_app(config)) as client:
            ready = wait_until(lambda: _ready(client), what="the champion loaded", timeout_seconds=READY_SECONDS,
                               interval_seconds=0.2)
            server = client.app.state.server
            ready["fallback"] = server.fallback.model_uri if server.fallback else server.fallback_problem
            answers = []
            for start in range(0, len(rows), REQUEST_ROWS):
                batch = rows.iloc[start:start + REQUEST_ROWS]
                response = client.post("/v1/predict", json={"instances": records(batch)})
                assert response.status_code == 200, response.text
                answers.append(response.json())
        return ready, answers  # leaving the client stops the server: its captures are flushed to PostgreSQL

    def monitor(self) -> dg.ExecuteInProcessResult:
        from housing_platform.defs.monitoring.partitions import today_partition_key

        result = loop.monitor(self.defs, self.instance, today_partition_key(), loop.QUIET_LOGS)
        assert result.success, _failures(result)
        return result

    def close(self) -> None:
        self.instance.dispose()


def _ready(client: TestClient) -> dict:
    response = client.get("/ready")
    if response.status_code != 200 or response.json().get("degraded"):
        raise NotReady(response.text[:300])
    return response.json()


def _failures(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _metadata(result: dg.ExecuteInProcessResult, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def test_a_second_host_with_an_empty_state_folder_serves_and_monitors_from_the_shared_stores(production) -> None:
    settings, root, districts = production
    started = time.perf_counter()
    root_uri = f"s3://{S3_BUCKET}/{S3_PREFIX}"
    traffic = districts.sample(REQUEST_ROWS * REQUESTS * 2, random_state=1)[list(FEATURE_COLUMNS)]

    # -- host A: raw -> validated (quarantine) -> trained -> evaluated -> registered champion -> drift report --
    host_a = Host(root / "host-a")
    try:
        trained = loop.train(host_a.defs, host_a.instance, TRAINING)
        assert trained.success, _failures(trained)
        registered = trained.output_for_node("registered_model_version")
        champion = registered["version"]
        assert registered["promoted"] and "champion" in registered["aliases"]
        ready_a, answers_a = host_a.serve(traffic.iloc[: len(traffic) // 2])
        assert ready_a["model_version"] == champion
        drift_a = _metadata(host_a.monitor(), "drift_report")
        report = _metadata(trained, "evaluation_report")
    finally:
        host_a.close()
    assert {answer["model_version"] for answer in answers_a} == {champion}

    # Every file the run wrote is in the bucket, and the values and metadata name it there.
    keys = bucket_keys(S3_BUCKET, f"{S3_PREFIX}/")
    run = trained.run_id
    [quarantine] = [k for k in keys if k.startswith(f"{S3_PREFIX}/quarantine/validated_housing_data_")]
    body = s3_client().get_object(Bucket=S3_BUCKET, Key=quarantine)["Body"].read()
    assert len(pd.read_csv(pd.io.common.BytesIO(body))) == BAD_ROWS
    assert _metadata(trained, "validated_housing_data")["quarantine_path"] == f"s3://{S3_BUCKET}/{quarantine}"
    plots = {k for k in keys if k.startswith(f"{S3_PREFIX}/reports/evaluation/{run}/")}
    assert plots and all(k.endswith(".png") for k in plots)
    plot_locations = set(trained.output_for_node("evaluation_report")["plots"].values())
    assert {f"s3://{S3_BUCKET}/{k}" for k in plots} == plot_locations
    assert "data:image/png;base64," in report["plots"]  # still embedded for the UI
    assert {f"{S3_PREFIX}/artifacts/transformers/{run}.skops", f"{S3_PREFIX}/artifacts/models/{run}.keras",
            f"{S3_PREFIX}/golden_holdout/manifest.json", f"{S3_PREFIX}/golden_holdout/golden_holdout.parquet",
            f"{S3_PREFIX}/server/fallback_baseline.json"} <= keys
    assert trained.output_for_node("trained_model")["path"] == f"{root_uri}/artifacts/models/{run}.keras"
    day = drift_a["html_report_path"].rsplit("/", 1)[-1].removesuffix(".html")
    assert drift_a["html_report_path"] == f"{root_uri}/reports/drift/{day}.html"
    assert drift_a["json_report_path"] == f"{root_uri}/reports/drift/{day}.json"
    first_report = json.loads(_object(f"reports/drift/{day}.json"))

    # Host A's state folder holds only scratch copies and its dagster.yaml: nothing another host reads.
    host_a_seconds = time.perf_counter() - started
    left_on_a = _files(root / "host-a")
    assert all(path.startswith(("scratch/", "dagster/")) for path in left_on_a), left_on_a
    shutil.rmtree(root / "host-a")  # gone: host B cannot have read anything from it

    # -- host B: a new, empty state folder, the same profile variables --
    (root / "host-b").mkdir()
    host_b = Host(root / "host-b")
    try:
        assert host_b.settings.mlflow_tracking_uri == settings.mlflow_tracking_uri
        ready_b, answers_b = host_b.serve(pd.concat([traffic.iloc[len(traffic) // 2:], traffic.iloc[:REQUEST_ROWS]]))
        monitored = host_b.monitor()
        history = loop.draw_history(host_b.defs, host_b.instance, loop.QUIET_LOGS)
        assert history.success, _failures(history)
        # A training step on B: evaluation_report loads the splits and the golden holdout (S3 IO manager) and
        # downloads the transformer and network host A's run wrote, checked against their recorded sha256. The
        # candidate is the champion A registered from those files, so the gate calls the comparison void: the
        # run fails on that one check, after the report was written.
        evaluated = dg.materialize([*host_b.defs.assets, *host_b.defs.asset_checks], selection=["evaluation_report"],
                                   instance=host_b.instance, resources=host_b.defs.resources, run_config=EVALUATION,
                                   raise_on_error=False)
    finally:
        host_b.close()
    assert (ready_b["model_version"], ready_b["follows"]) == (champion, "models:/housing_price_model@champion")
    # The champion's fallback baseline, read from the bucket at start (host B never had the file).
    assert ready_b["fallback"] == f"fallback:{root_uri}/server/fallback_baseline.json"
    assert json.loads(_object("server/fallback_baseline.json"))["model_version"] == champion
    assert {answer["model_version"] for answer in answers_b} == {champion}
    # B's last request repeats A's first: the same champion files give the same predictions on both hosts (the
    # float64 fast path on the same rows: only BLAS summation order may differ, ~1e-15 relative; 1e-9 is far above
    # that and far below any change of model).
    np.testing.assert_allclose(answers_b[-1]["predictions"], answers_a[0]["predictions"], rtol=1e-9)

    # B's drift report for the day covers both hosts' traffic and replaced A's in the bucket; history read it there.
    drift_b = _metadata(monitored, "drift_report")
    assert drift_b["html_report_path"] == f"{root_uri}/reports/drift/{day}.html"
    assert drift_b["reference_model_version"] == champion
    second_report = json.loads(_object(f"reports/drift/{day}.json"))
    assert second_report != first_report
    assert drift_a["current_rows_raw"] == len(traffic) // 2
    assert drift_b["current_rows_raw"] == len(traffic) + REQUEST_ROWS
    assert _metadata(history, "drift_history")["days_with_report_raw"] >= 1
    assert {f"{S3_PREFIX}/reports/drift_history.html", f"{S3_PREFIX}/reports/drift_history.png"} <= bucket_keys(
        S3_BUCKET, f"{S3_PREFIX}/reports/")
    # B's evaluation scored A's candidate files: the same test RMSE (the same network on the same rows; rel 1e-9
    # leaves room for summation order only, a different model moves it by percents), its plots in the bucket.
    gate = {e.check_name: e for e in evaluated.get_asset_check_evaluations()}
    assert {name for name, e in gate.items() if not e.passed} == {"no_regression_vs_champion"}
    void = gate["no_regression_vs_champion"].description
    assert f"the 'champion' (version {champion}) is the candidate itself" in void
    again = evaluated.output_for_node("evaluation_report")
    first = trained.output_for_node("evaluation_report")
    assert again["candidate_model_sha256"] == first["candidate_model_sha256"]
    assert again["metrics"]["rmse"] == pytest.approx(first["metrics"]["rmse"], rel=1e-9)
    assert again["champion"]["version"] == champion  # and the champion, through the tracking server
    assert all(p.startswith(f"{root_uri}/reports/evaluation/{evaluated.run_id}/") for p in again["plots"].values())
    left_on_b = _files(root / "host-b")
    assert all(path.startswith(("scratch/", "dagster/", "capture/")) for path in left_on_b), left_on_b
    print(f"\nsecond host: host A (train, register, serve {len(traffic) // 2} rows, drift report) "
          f"{host_a_seconds:.1f} s; host B (serve {len(traffic) // 2 + REQUEST_ROWS} rows, drift report, history, "
          "evaluation report) "
          f"{time.perf_counter() - started - host_a_seconds:.1f} s; {len(keys)} objects in the bucket after A; "
          f"{len(left_on_a)} scratch/config files were on A")


def _object(key: str) -> str:
    return s3_client().get_object(Bucket=S3_BUCKET, Key=f"{S3_PREFIX}/{key}")["Body"].read().decode("utf-8")
