"""deploy/ validates offline: manifests against the Kubernetes schemas, Dockerfiles through hadolint,
the Helm values against what the platform defines, the dashboard against the server's metrics, and
the ECS dagster.yaml through DagsterInstance on the local PostgreSQL.

Nothing here needs a cluster, a container engine or the network (kubectl's client-side dry run
does need an API server for discovery, so it is not used: see README "Deploying").
"""

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from housing_platform.config.settings import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
KUBERNETES_VERSION = "1.37.0"  # kubernetes-validate's newest schemas (PyPI 1.37.0)
METRIC_NAME = re.compile(r"\bhousing_[a-z_]+\b")


def yaml_documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document is not None]


def test_every_yaml_file_under_deploy_parses():
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert {path.relative_to(DEPLOY).as_posix() for path in files} >= {
        "helm/dagster-values.yaml", "k8s/model-server.yaml", "k8s/mlflow-server.yaml", "monitoring/prometheus.yml",
        "ecs/dagster.yaml",
    }
    for path in files:
        assert yaml_documents(path), f"{path} is empty"


def test_model_server_manifests_validate_against_the_kubernetes_schemas():
    import kubernetes_validate

    documents = yaml_documents(DEPLOY / "k8s" / "model-server.yaml")
    kinds = {document["kind"] for document in documents}
    assert kinds == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for document in documents:
        # strict: an unknown field (a typo such as `readinessProb`) fails instead of being ignored
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)

    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["securityContext"]["runAsNonRoot"] is True
    secrets = {volume["secret"]["secretName"] for volume in pod["volumes"] if "secret" in volume}
    assert secrets == {"housing-model-server-tokens"}  # the API tokens come from a Secret, not the image


def test_mlflow_server_manifest_validates_and_runs_the_command_the_profile_renders():
    import kubernetes_validate

    from housing_platform.config.mlflow_server import MLFLOW_SERVER_ENVIRONMENT, mlflow_server_command

    documents = yaml_documents(DEPLOY / "k8s" / "mlflow-server.yaml")
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    value = dict(zip(command, command[1:]))
    rendered = mlflow_server_command(
        value["--backend-store-uri"], value["--artifacts-destination"], host=value["--host"],
        port=int(value["--port"]), workers=int(value["--workers"]),
    )
    assert command[: len(rendered)] == rendered  # then only --allowed-hosts, for the Service's names
    assert value["--backend-store-uri"].endswith("_mlflow")
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert MLFLOW_SERVER_ENVIRONMENT.items() <= env.items()


def test_kubernetes_schema_validation_rejects_a_misspelled_field():
    import kubernetes_validate

    deployment = next(d for d in yaml_documents(DEPLOY / "k8s" / "model-server.yaml") if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProb"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProb"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("dockerfile", ["user-code.Dockerfile", "model-server.Dockerfile"])
def test_dockerfiles_pass_hadolint_and_run_as_a_non_root_user(dockerfile):
    hadolint = Path(sys.executable).with_name("hadolint")
    path = DEPLOY / "docker" / dockerfile
    completed = subprocess.run([str(hadolint), "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    content = path.read_text()
    assert content.count("FROM ") >= 2, "multi-stage: the build tools stay out of the runtime image"
    assert re.search(r"^USER 10001", content, re.MULTILINE)
    assert "--constraint requirements-lock.txt" in content  # the versions CI tested


def test_hadolint_flags_a_dockerfile_that_breaks_its_rules(tmp_path):
    hadolint = Path(sys.executable).with_name("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install flask\n")
    completed = subprocess.run([str(hadolint), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert completed.returncode != 0 and "DL3007" in completed.stdout  # `latest` is refused


def test_helm_values_name_the_code_location_and_limit_retraining_runs_to_one():
    from housing_platform.defs.jobs import retraining_job

    values = yaml.safe_load((DEPLOY / "helm" / "dagster-values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    module = re.search(r'^module_name = "([^"]+)"', pyproject, re.MULTILINE).group(1)
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", module]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["HOUSING_PROFILE"] == "production"
    assert env["HOUSING_MLFLOW_TRACKING_URI"].startswith("http")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    [(key, value)] = retraining_job.tags.items()
    assert coordinator["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"] == [
        {"key": key, "value": value, "limit": 1}
    ]


def test_model_server_pods_run_the_production_profile_of_the_code_location():
    """The model server's ConfigMap resolves to the production profile on the same stores as the Dagster code
    location: the tracking server, the bucket and PostgreSQL captures (a pod that read the embedded profile would
    serve from an empty SQLite registry in its ephemeral state folder)."""
    from housing_platform.config.profiles import PRODUCTION, ProductionSettings, active_profile
    from housing_platform.config.settings import HousingSettings

    [config_map] = [d for d in yaml_documents(DEPLOY / "k8s" / "model-server.yaml") if d["kind"] == "ConfigMap"]
    pod = {str(k): str(v) for k, v in config_map["data"].items()}
    [deployment] = yaml.safe_load((DEPLOY / "helm" / "dagster-values.yaml").read_text())["dagster-user-deployments"][
        "deployments"]
    code_location = {item["name"]: item["value"] for item in deployment["env"]}
    assert active_profile(pod) == PRODUCTION
    server = ProductionSettings.from_env(HousingSettings(), pod)
    dagster = ProductionSettings.from_env(HousingSettings(), code_location)
    assert server.mlflow_tracking_uri.startswith("http") and server.capture_url.startswith("postgresql")
    for field in ("mlflow_tracking_uri", "mlflow_artifact_root", "capture_url", "s3_bucket", "s3_prefix", "aws_region"):
        assert getattr(server, field) == getattr(dagster, field), field


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def exposed_metric_names() -> set[str]:
    """Every sample name the server's metrics registry exposes, with the capture writer and the serving status present."""
    from housing_platform.adapters.capture.writer import CaptureWriterStats
    from housing_platform.server.metrics import ServingMetrics
    from housing_platform.server.model_manager import ServingStatus
    from housing_platform.server.routes import ROUTES

    class Writer:  # the collector reads only stats(); every field at zero
        def stats(self):
            return CaptureWriterStats(**{name: 0 for name in CaptureWriterStats.__dataclass_fields__})

    status = ServingStatus(serving_version="1", target_version="1", checked_at=None, refusal=None, last_error=None)
    metrics = ServingMetrics(ROUTES, writer_getter=Writer, status_getter=lambda: status)
    metrics.set_model("1", "models:/housing_price_model/1", None)
    metrics.observe_request("/v1/predict", "POST", 200, 0.001)
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


def test_every_metric_the_dashboard_queries_is_exposed_by_the_server():
    expressions = dashboard_expressions()
    queried = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert len(queried) >= 8
    exposed = exposed_metric_names()
    assert queried - exposed == set(), f"not exposed by server/metrics.py: {sorted(queried - exposed)}"
    # the panels the runbook asks for are there
    for needed in ("housing_http_request_duration_seconds_bucket", "housing_http_requests_total",
                   "housing_rows_scored_total", "housing_capture_queue_depth", "housing_fallback_active",
                   "housing_model_info"):
        assert needed in queried


def test_prometheus_scrapes_the_server_with_a_token_from_a_file():
    config = yaml.safe_load((DEPLOY / "monitoring" / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        assert job["metrics_path"] == "/metrics"
        assert job["authorization"]["credentials_file"]  # /metrics needs an admin-scope token
        assert "credentials" not in job["authorization"]


@pytest.mark.postgres
def test_ecs_dagster_yaml_loads_through_dagster_instance(postgres_server, tmp_path, monkeypatch):
    import dagster as dg
    from dagster_postgres import PostgresRunStorage

    from housing_platform.defs.jobs import retraining_job

    database = f"housing_ecs_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text((DEPLOY / "ecs" / "dagster.yaml").read_text())
    for name, value in {
        "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_DB": database,
        "HOUSING_POSTGRES_PASSWORD": "unused-with-trust-auth", "HOUSING_S3_BUCKET": "ml-platform",
        "AWS_REGION": "us-east-1", "HOUSING_ECS_TASK_DEFINITION": "housing-user-code",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            [(key, value)] = retraining_job.tags.items()
            limits = instance.run_coordinator.get_run_queue_config().tag_concurrency_limits
            assert limits == [{"key": key, "value": value, "limit": 1}]
            assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
            # The launcher is built on first use and then calls ECS: only its name is checked here.
            assert instance.get_ref().run_launcher_data.class_name == "EcsRunLauncher"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def test_executor_follows_housing_executor_and_refuses_unknown_names(monkeypatch):
    import dagster as dg
    from dagster_k8s import k8s_job_executor

    from housing_platform.config.profiles import ProfileConfigurationError
    from housing_platform.defs.resources import executor_for_environment

    monkeypatch.delenv("HOUSING_EXECUTOR", raising=False)
    assert executor_for_environment() is dg.in_process_executor
    monkeypatch.setenv("HOUSING_EXECUTOR", "k8s_job")
    assert executor_for_environment() is k8s_job_executor  # a pod per step on Kubernetes
    monkeypatch.setenv("HOUSING_EXECUTOR", "celery")
    with pytest.raises(ProfileConfigurationError, match=r"HOUSING_EXECUTOR must be one of in_process, k8s_job; got 'celery'"):
        executor_for_environment()
