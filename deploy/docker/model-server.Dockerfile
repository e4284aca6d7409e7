# syntax=docker/dockerfile:1
# The model server image: `housing-platform serve` (FastAPI on uvicorn) for the champion. With the
# production profile's variables (HOUSING_PROFILE=production, HOUSING_POSTGRES_URL, HOUSING_S3_BUCKET,
# HOUSING_MLFLOW_TRACKING_URI: deploy/k8s/model-server.yaml) it reads the registry through the MLflow
# tracking server and writes captures to PostgreSQL. Build from the repository root:
#   docker build -f deploy/docker/model-server.Dockerfile -t registry.example.com/housing/model-server:<git sha> .
# Versions come from requirements-lock.txt (pip constraints), so the image runs what CI tested.

# ---- build: a virtualenv with the pinned dependencies and the package ---------------------------
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements-lock.txt pyproject.toml setup.py README.md ./
COPY housing_platform ./housing_platform
RUN pip install --constraint requirements-lock.txt .

# ---- runtime: the virtualenv only, run as an unprivileged user ----------------------------------
FROM python:3.11.14-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOUSING_HOME=/var/lib/housing \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true TF_CPP_MIN_LOG_LEVEL=3
RUN groupadd --system --gid 10001 housing \
    && useradd --system --uid 10001 --gid housing --home-dir /var/lib/housing --create-home housing
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/housing
USER 10001:10001
EXPOSE 8080
# Off loopback the server refuses to start without API tokens (<HOUSING_HOME>/server/tokens.json):
# the Kubernetes manifest copies them there from a Secret.
ENTRYPOINT ["housing-platform", "serve", "--host", "0.0.0.0", "--port", "8080"]
