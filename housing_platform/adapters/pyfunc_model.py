"""The registered model, logged to MLflow *from code* (MLflow's "models from code").

MLflow stores this file next to four artifacts — the skops transformer, the Keras ``.keras`` network,
the training config and the training feature ranges as JSON — and runs it on load. Nothing is unpickled: the transformer loads
through skops with an explicit trusted-type list, the network through Keras's safe mode.

Whoever loads ``models:/housing_price_model@champion`` (the server, batch scoring, a notebook) gets
``predict(DataFrame of district features) -> median house value in USD`` with exactly the
preprocessing used in training. Loading needs the ``housing_platform`` package installed.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd


class HousingPriceModel(mlflow.pyfunc.PythonModel):
    """Transformer + Keras network as one pyfunc: raw district columns in, dollars out."""

    def load_context(self, context) -> None:
        from housing_platform.core.features import load_transformer
        from housing_platform.core.model import TrainingConfig, load_model

        self.transformer = load_transformer(context.artifacts["transformer"])
        self.network = load_model(context.artifacts["network"])
        with open(context.artifacts["config"]) as handle:
            self.config = TrainingConfig(**json.load(handle))
        # Per-feature range seen in training: the server flags (but accepts) values outside it.
        with open(context.artifacts["feature_ranges"]) as handle:
            self.feature_ranges = json.load(handle)
        # The calibrated prediction intervals (core/conformal.py); versions registered before them have none.
        self.intervals = None
        if "intervals" in context.artifacts:
            with open(context.artifacts["intervals"]) as handle:
                self.intervals = json.load(handle)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        from housing_platform.core.features import transform
        from housing_platform.core.model import predict

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return np.asarray(predict(self.network, transform(self.transformer, frame), self.config), dtype=np.float64)


mlflow.models.set_model(HousingPriceModel())
