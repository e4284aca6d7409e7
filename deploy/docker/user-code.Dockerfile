# syntax=docker/dockerfile:1
# The Dagster user-code image: the housing_platform code location, served by `dagster code-server`
# (the Helm chart's user-code deployment) and run by every run and step pod (K8sRunLauncher,
# k8s_job_executor). Build from the repository root:
#   docker build -f deploy/docker/user-code.Dockerfile -t registry.example.com/housing/user-code:<git sha> .
# Versions come from requirements-lock.txt (pip constraints), so the image runs what CI tested.

# ---- build: a virtualenv with the pinned dependencies and the package ---------------------------
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (a layer that changes only with the lock), then the code.
COPY requirements-lock.txt pyproject.toml setup.py README.md ./
COPY housing_platform ./housing_platform
# The k8s extra adds dagster-k8s (K8sRunLauncher, k8s_job_executor); the aws extra's packages
# (dagster-aws, boto3) are core dependencies already.
RUN pip install --constraint requirements-lock.txt ".[k8s]"

# ---- runtime: the virtualenv and the data file, run as an unprivileged user -----------------------
FROM python:3.11.14-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOUSING_PROFILE=production \
    HOUSING_HOME=/var/lib/housing \
    DAGSTER_HOME=/var/lib/housing/dagster \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true DAGSTER_DISABLE_TELEMETRY=true TF_CPP_MIN_LOG_LEVEL=3
RUN groupadd --system --gid 10001 housing \
    && useradd --system --uid 10001 --gid housing --home-dir /var/lib/housing --create-home housing
COPY --from=build /opt/venv /opt/venv
COPY --chown=housing:housing data/california_housing.csv /app/data/california_housing.csv
ENV HOUSING_DATA_PATH=/app/data/california_housing.csv
WORKDIR /app
USER 10001:10001
EXPOSE 3030
# The chart overrides the command with `dagster api grpc ...`; this default serves the same location.
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "3030", "--module-name", "housing_platform.defs.definitions"]
