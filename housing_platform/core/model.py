"""The house-price network: a Keras ``Sequential`` regressor, trained seeded and deterministic.

TensorFlow / Keras are imported inside the functions, so importing this module (for
:class:`TrainingConfig`, say) stays cheap.

The network learns a *transformed* target (``log`` → standardised ``log(y)``; ``scale`` → standardised
``y``; ``none`` → ``y``) with MSE. After training, :func:`train_model` returns a model whose last layers
undo that transform, so the saved model maps the transformer's features straight to US dollars and
needs no side file::

    Input(n_features)
    [Dense(units, activation) → Dropout(rate)] × len(hidden_units)    (Dropout: identity at inference)
    Dense(1)
    Rescaling(scale=σ, offset=μ)              # μ, σ of the transformed train target ("none": absent)
    Activation("exponential")                 # only for target_transform="log"
    ReLU(max_value=MAX_HOUSE_VALUE)           # only if clip_predictions: the survey caps values there

With ``ensemble_size`` M > 1 (the default, 3), M such networks are trained side by side and the saved
hidden and output Dense layers are their merge (``core/ensemble.py``): M·units wide, block-diagonal
after the first, the output averaging the members; no Dropout layers. Same layer types, same port.

A numpy forward pass therefore iterates ``model.layers``: ``Dense`` → ``x @ kernel + bias`` then its
``activation``; ``Dropout`` → skip; ``Rescaling`` → ``x * layer.scale + layer.offset``; ``Activation``
→ ``exp``; ``ReLU`` → ``clip(x, 0, layer.max_value)``. All are Keras built-ins, so
:func:`load_model` works with ``safe_mode=True`` and no custom objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from housing_platform.core import ensemble
from housing_platform.core.schema import MAX_HOUSE_VALUE

if TYPE_CHECKING:  # pragma: no cover
    import keras

# Train steps run per compiled call: ~35 % faster epochs on CPU for this small network, and verified
# to give bit-identical weights to 1 step per call (the optimiser still updates once per batch).
STEPS_PER_EXECUTION = 32
SMALL_INPUT_ROWS = 2_048  # up to this many rows, predict() calls the model directly (no predict() loop)


class TrainingConfig(BaseModel):
    """Hyper-parameters of one training run. The defaults are the tuned ones (benchmarks/model_quality.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_units: tuple[int, ...] = Field(
        (64, 32), min_length=1,
        description="Units per hidden layer of each ensemble member (3 members of 64-32: 42k multiply-adds per row).",
    )
    activation: Literal["relu", "elu", "selu", "gelu", "swish", "tanh"] = "gelu"
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout rate after each hidden layer (0 = none).")
    learning_rate: float = Field(3e-3, gt=0.0, description="Adam's initial learning rate.")
    epochs: int = Field(80, ge=1, description="Upper bound on epochs (bounds the time); early stopping ends sooner.")
    batch_size: int = Field(256, ge=1)
    patience: int = Field(10, ge=1, description="Epochs without validation improvement before stopping.")
    reduce_lr_patience: int = Field(5, ge=0, description="Halve the learning rate after this many flat epochs, 0: never.")
    target_transform: Literal["log", "scale", "none"] = Field(
        "scale", description="What the network learns: standardised y ('scale'), standardised log(y) ('log'), raw y."
    )
    clip_predictions: bool = Field(True, description=f"Clip predictions to [0, {MAX_HOUSE_VALUE:,.0f}], the survey cap.")
    ensemble_size: int = Field(
        3, ge=1, le=16,
        description="Networks of this shape trained side by side and averaged, saved as one Sequential (core/ensemble.py).",
    )
    seed: int = 42


@dataclass
class TrainingResult:
    """A trained model (outputs dollars) and how the training went."""

    model: keras.Sequential
    history: dict[str, list[float]]  # per epoch: loss, val_loss, val_rmse (USD), learning_rate
    epochs_run: int
    best_epoch: int  # 1-based; the returned weights are this epoch's
    target_offset: float  # μ and σ of the transformed train target (also inside the model's Rescaling)
    target_scale: float
    train_seconds: float = 0.0
    config: TrainingConfig = field(default_factory=TrainingConfig)


def _forward_target(y: np.ndarray, transform: str) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if transform == "log":
        if np.any(y <= 0):
            raise ValueError("target_transform='log' needs a strictly positive target")
        return np.log(y)
    return y


def _target_stats(y_train: np.ndarray, transform: str) -> tuple[float, float]:
    if transform == "none":
        return 0.0, 1.0
    transformed = _forward_target(y_train, transform)
    scale = float(transformed.std())
    return float(transformed.mean()), scale if scale > 0 else 1.0


def build_network(n_features: int, config: TrainingConfig) -> keras.Sequential:
    """The trainable part (features → transformed target); see the module docstring."""
    import keras

    initializer = "lecun_normal" if config.activation == "selu" else "he_normal"
    layers: list = [keras.Input(shape=(n_features,), name="features")]
    for i, units in enumerate(config.hidden_units):
        layers.append(
            keras.layers.Dense(units, activation=config.activation, kernel_initializer=initializer, name=f"hidden_{i}")
        )
        if config.dropout > 0:
            layers.append(keras.layers.Dropout(config.dropout, name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(1, name="output"))
    return keras.Sequential(layers, name="house_price_network")


def _with_inverse_target(
    network: keras.Sequential | list, n_features: int, config: TrainingConfig, offset: float, scale: float
) -> keras.Sequential:
    """A Sequential sharing ``network``'s layers (or the given list of layers), then the layers back to dollars."""
    import keras

    body = network if isinstance(network, list) else network.layers
    layers: list = [keras.Input(shape=(n_features,), name="features"), *body]
    if config.target_transform != "none":
        layers.append(keras.layers.Rescaling(scale=scale, offset=offset, name="target_inverse_scale"))
    if config.target_transform == "log":
        layers.append(keras.layers.Activation("exponential", name="target_inverse_log"))
    if config.clip_predictions:
        layers.append(keras.layers.ReLU(max_value=MAX_HOUSE_VALUE, name="clip_to_survey_range"))
    return keras.Sequential(layers, name="house_price_model")


def _progress_callback(log, dollars_model, X_val, y_val, epochs: int):
    """A Keras callback: per epoch, the validation RMSE in dollars into ``logs`` and a line to ``log``."""
    import keras

    from housing_platform.core.metrics import regression_metrics

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            predictions = _call(dollars_model, X_val)
            logs["val_rmse"] = regression_metrics(y_val, predictions)["rmse"]
            logs["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())
            if log is not None:
                log(
                    f"epoch {epoch + 1}/{epochs}: loss {logs.get('loss', float('nan')):.5f}, "
                    f"val_loss {logs.get('val_loss', float('nan')):.5f}, val RMSE ${logs['val_rmse']:,.0f}, "
                    f"lr {logs['learning_rate']:.2e}"
                )

    return Progress()


def enable_determinism(seed: int) -> None:
    """Seed Python, numpy and TensorFlow and make TensorFlow ops deterministic (process-wide)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train_model(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainingConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Train on (X_train, y_train), early-stop on (X_val, y_val); same inputs + config → same weights.

    ``y`` is in dollars; ``X`` is the transformer's output. The returned model predicts dollars and
    carries the weights of the best validation epoch.
    """
    import keras

    config = config or TrainingConfig()
    X_train = np.asarray(X_train, dtype=np.float32)
    X_val = np.asarray(X_val, dtype=np.float32)
    y_train = np.asarray(y_train, dtype=np.float64).reshape(-1)
    y_val = np.asarray(y_val, dtype=np.float64).reshape(-1)
    if len(X_train) != len(y_train) or len(X_val) != len(y_val):
        raise ValueError("X and y must have the same number of rows")
    if len(X_val) == 0:
        raise ValueError("early stopping needs a non-empty validation set")

    enable_determinism(config.seed)
    offset, scale = _target_stats(y_train, config.target_transform)
    encode = lambda y: ((_forward_target(y, config.target_transform) - offset) / scale).astype(np.float32)  # noqa: E731

    n_features = X_train.shape[1]
    members = config.ensemble_size
    network = build_network(n_features, config) if members == 1 else ensemble.build_members(n_features, config)
    if members > 1:  # every member learns the same target; the loss is the mean of their MSEs
        encode_one = encode
        encode = lambda y: np.repeat(encode_one(y)[:, None], members, axis=1)  # noqa: E731
    network.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="mse",
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    body = network.layers if members == 1 else [network, ensemble.averaging_layer(members)]
    dollars_model = _with_inverse_target(body, n_features, config, offset, scale)

    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True
    )
    callbacks = [_progress_callback(log, dollars_model, X_val, y_val, config.epochs)]
    if config.reduce_lr_patience:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=config.reduce_lr_patience)
        )
    callbacks.append(early_stopping)  # last, so it restores the best weights after the others ran

    if log is not None:
        log(
            f"training {network.count_params():,} parameters on {len(X_train):,} rows "
            f"({len(X_val):,} validation), target transform {config.target_transform!r}"
        )
    started = time.perf_counter()
    fitted = network.fit(
        X_train,
        encode(y_train),
        validation_data=(X_val, encode(y_val)),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    if members > 1:  # the registered model: the members' average as one Sequential of Dense layers
        dollars_model = _with_inverse_target(ensemble.merged_layers(network, n_features, config), n_features,
                                             config, offset, scale)
    history = {key: [float(v) for v in values] for key, values in fitted.history.items()}
    epochs_run = len(history["loss"])
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    if log is not None:
        log(
            f"stopped after {epochs_run} epochs in {seconds:.1f} s; best epoch {best_epoch} "
            f"(val RMSE ${history['val_rmse'][best_epoch - 1]:,.0f})"
        )
    return TrainingResult(
        model=dollars_model,
        history=history,
        epochs_run=epochs_run,
        best_epoch=best_epoch,
        target_offset=offset,
        target_scale=scale,
        train_seconds=seconds,
        config=config,
    )


def _call(model, X: np.ndarray) -> np.ndarray:
    return np.asarray(model(X, training=False), dtype=np.float64).reshape(-1)


def predict(model: keras.Model, X: np.ndarray, config: TrainingConfig | None = None) -> np.ndarray:
    """Predicted values in dollars (``float64``, one per row) for the transformer's output ``X``.

    The inverse target transform is inside the model, so ``config`` is only used for the batch size
    of large inputs. Small inputs call the model directly, skipping ``model.predict``'s per-call
    set-up (tens of milliseconds); large ones go through ``model.predict`` in batches.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 1:
        X = X.reshape(1, -1)
    if len(X) == 0:
        return np.zeros(0, dtype=np.float64)
    if len(X) <= SMALL_INPUT_ROWS:
        return _call(model, X)
    batch_size = max((config or TrainingConfig()).batch_size, SMALL_INPUT_ROWS)
    return np.asarray(model.predict(X, batch_size=batch_size, verbose=0), dtype=np.float64).reshape(-1)


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Write the model in the Keras native format (``.keras``: a zip of config JSON + weights)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: the Keras native format needs a '.keras' file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def load_model(path: str | Path) -> keras.Model:
    """Load a ``.keras`` model with ``safe_mode=True`` (no arbitrary code, e.g. no Lambda layers)."""
    import keras

    return keras.models.load_model(Path(path), compile=False, safe_mode=True)
