"""A real registered model for the serving tests, built in ~30 s without Dagster.

:func:`registered_models` validates and splits the real district CSV, fits the transformer on a few
thousand train rows, trains the network with the default architecture for a few epochs and registers
it twice in a throwaway MLflow registry (SQLite + local artifacts in a temp folder):

* version 1 — that network, promoted to ``champion``;
* version 2 — the same network with its output bias nudged (so every prediction differs), registered
  but not promoted: the hot-swap test promotes it.

The result is memoised per process, so every test module that asks for it shares one build. It lives
in ``devtools`` (not in a conftest) because the scoring, server and batch-asset tests and the
benchmarks (when the state folder has no champion) all use it; nothing here imports the tests.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from housing_platform.config.settings import DEFAULT_DATA_PATH
from housing_platform.core.schema import FEATURE_COLUMNS, TARGET_COLUMN
from housing_platform.devtools.processes import http_ok, wait_until

TRAIN_ROWS = 3_000
VALIDATION_ROWS = 600
EPOCHS = 3
VERSION_2_BIAS_SHIFT = 0.05  # added to the output unit (a standardised target): every prediction moves


@dataclass
class RegisteredModels:
    """Where the throwaway registry lives and what is in it."""

    root: Path
    tracking_uri: str
    artifact_root: str
    model_name: str
    versions: list[str]
    train: pd.DataFrame
    test: pd.DataFrame  # the WHOLE test split of the real data
    scorers: dict[str, object] = field(default_factory=dict)  # version -> FastScorer (filled lazily)
    sources: dict[str, str] = field(default_factory=dict)  # version -> local copy of its model files

    def registry(self):
        from housing_platform.adapters.mlflow_registry import ModelRegistry

        return ModelRegistry(self.tracking_uri, self.artifact_root, model_name=self.model_name)

    def private_copy(self, root: Path) -> RegisteredModels:
        """This registry copied under ``root`` (``root/mlflow``): alias moves there touch no other user of it."""
        import dataclasses
        import shutil

        shutil.copytree(self.root / "mlflow", root / "mlflow")
        return dataclasses.replace(self, tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
                                   artifact_root=(root / "mlflow" / "artifacts").as_uri(), scorers={}, sources={})

    def env(self) -> dict[str, str]:
        """Environment variables that point a subprocess (``housing-platform serve``) at this registry."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "HOUSING_MLFLOW_ARTIFACT_ROOT": self.artifact_root}

    def model_source(self, version: str) -> str:
        """Where the version's model files are, read from THIS registry.

        A ``models:/`` URI — and, in MLflow 3, the ``models:/m-…`` source a version records — resolves
        through MLflow's process-wide tracking and registry URIs, which whichever registry was opened
        last has set (MLflow's ``models:/`` artifact repository ignores a URI passed to it). In a test
        session several registries coexist, so the logged model's artifact location is looked up with
        a client bound to this registry and the files are loaded from there.
        """
        from mlflow import MlflowClient

        if version not in self.sources:
            client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            registered = client.get_model_version(self.model_name, str(version))
            source = registered.source
            if source.startswith("models:/"):  # MLflow 3: the source names a logged model, models:/<model id>
                source = client.get_logged_model(source.removeprefix("models:/")).artifact_location
            self.sources[version] = source
        return self.sources[version]

    def load_pyfunc(self, version: str):
        import mlflow

        return mlflow.pyfunc.load_model(self.model_source(version))

    def scorer(self, version: str):
        from housing_platform.scoring.verification import load_fast_scorer

        if version not in self.scorers:
            self.scorers[version] = load_fast_scorer(self.model_source(version))
        return self.scorers[version]


def real_splits():
    from housing_platform.core import splits
    from housing_platform.core.validation import read_housing_csv, validate_housing_frame

    frame = validate_housing_frame(read_housing_csv(DEFAULT_DATA_PATH)).valid
    return splits.split_frame(frame)


def build_registered_models(root: Path) -> RegisteredModels:
    from housing_platform.adapters.mlflow_registry import MODEL_NAME, ModelRegistry, model_artifacts, sha256_of
    from housing_platform.core import features
    from housing_platform.core import model as keras_model

    root.mkdir(parents=True, exist_ok=True)
    parts = real_splits()
    train = parts.train.sample(n=TRAIN_ROWS, random_state=0).reset_index(drop=True)
    validation = parts.validation.sample(n=VALIDATION_ROWS, random_state=0).reset_index(drop=True)
    transformer = features.fit_transformer(train)
    config = keras_model.TrainingConfig(epochs=EPOCHS, patience=EPOCHS, reduce_lr_patience=0)
    result = keras_model.train_model(
        features.transform(transformer, train, out_of_fold=True), train[TARGET_COLUMN].to_numpy(),
        features.transform(transformer, validation), validation[TARGET_COLUMN].to_numpy(),
        config,
    )
    from housing_platform.core.conformal import calibrate

    x_validation = features.transform(transformer, validation)
    intervals = calibrate(validation[TARGET_COLUMN], keras_model.predict(result.model, x_validation)).model_dump()
    files = root / "files"
    transformer_path = features.save_transformer(transformer, files / "transformer.skops")
    network_v1 = keras_model.save_model(result.model, files / "network_v1.keras")
    output = result.model.get_layer("output")
    kernel, bias = output.get_weights()
    output.set_weights([kernel, bias + VERSION_2_BIAS_SHIFT])
    network_v2 = keras_model.save_model(result.model, files / "network_v2.keras")

    tracking_uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    artifact_root = (root / "mlflow" / "artifacts").as_uri()
    registry = ModelRegistry(tracking_uri, artifact_root)
    example = train[list(FEATURE_COLUMNS)].head(5)
    versions = []
    for network_path in (network_v1, network_v2):
        version = registry.log_and_register(
            run_id=registry.start_run("serving-tests"),
            artifacts=model_artifacts(files, transformer_path, network_path, config.model_dump(mode="json"), train,
                                      intervals=intervals),
            input_example=example,
            predictions_example=np.full(len(example), 200_000.0),
            tags={"model_sha256": sha256_of(network_path), "purpose": "serving tests"},
            reference=None,
        )
        versions.append(version.version)
    registry.promote(versions[0])
    return RegisteredModels(
        root=root,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        model_name=MODEL_NAME,
        versions=versions,
        train=train,
        test=parts.test,
    )


_BUILT: dict[str, RegisteredModels] = {}
_LOCK = threading.Lock()


def registered_models(tmp_path_factory=None) -> RegisteredModels:
    """The shared build (once per process); in ``tmp_path_factory``'s folder or a temp dir."""
    with _LOCK:
        if "models" not in _BUILT:
            root = (
                tmp_path_factory.mktemp("registered_models")
                if tmp_path_factory is not None
                else Path(tempfile.mkdtemp(prefix="housing_registered_models_"))
            )
            _BUILT["models"] = build_registered_models(root)
        models = _BUILT["models"]
    # Other tests (or the registry constructor) may have pointed MLflow elsewhere in between.
    import mlflow

    mlflow.set_tracking_uri(models.tracking_uri)
    mlflow.set_registry_uri(models.tracking_uri)
    return models


def wait_until_ready(base_url: str, timeout: float = 120.0, process=None) -> dict:
    """Poll ``/ready`` until it answers 200; fails early if ``process`` exited."""
    return wait_until(http_ok(f"{base_url}/ready"), what=f"the server at {base_url}", timeout_seconds=timeout,
                      interval_seconds=0.1, process=process)


def subprocess_env(models: RegisteredModels, home: Path, capture_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(models.env())
    env.update({"HOUSING_HOME": str(home), "HOUSING_CAPTURE_URL": capture_url, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return env


def records(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready instances (NaN -> None) of a district frame's feature columns."""
    rows = frame[list(FEATURE_COLUMNS)].astype(object).where(frame[list(FEATURE_COLUMNS)].notna(), None)
    return rows.to_dict("records")


if __name__ == "__main__":  # build once by hand and print where: python -m housing_platform.devtools.tiny_models
    built = registered_models()
    print(json.dumps({"root": str(built.root), "tracking_uri": built.tracking_uri, "versions": built.versions}, indent=2))
