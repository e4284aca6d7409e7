"""Run config of the training assets: the network's hyper-parameters and the promotion gate's limits.

Both are shown in the launchpad with their defaults, and both take those defaults from the domain:
`core.model.TrainingConfig` (the tuned hyper-parameters) and `core.model_gate.GateThresholds` (the
gate), so changing a default there changes it here.
"""

import dagster as dg

from housing_platform.core.conformal import IntervalConfig
from housing_platform.core.model import TrainingConfig
from housing_platform.core.model_gate import GateThresholds
from housing_platform.defs.config_fields import field_from


class TrainingRunConfig(dg.Config):
    """Hyper-parameters of the network (the defaults meet the quality target)."""

    hidden_units: list[int] = field_from(TrainingConfig, "hidden_units", "Units per hidden Dense layer.")
    activation: str = field_from(TrainingConfig, "activation", "Hidden-layer activation.")
    dropout: float = field_from(TrainingConfig, "dropout", "Dropout after each hidden layer.")
    learning_rate: float = field_from(TrainingConfig, "learning_rate", "Adam's initial learning rate.")
    epochs: int = field_from(TrainingConfig, "epochs", "Maximum epochs; early stopping ends sooner.")
    batch_size: int = field_from(TrainingConfig, "batch_size", "Rows per gradient step.")
    patience: int = field_from(TrainingConfig, "patience", "Flat validation epochs before stopping.")
    reduce_lr_patience: int = field_from(
        TrainingConfig, "reduce_lr_patience", "Flat epochs before halving the learning rate."
    )
    target_transform: str = field_from(
        TrainingConfig, "target_transform", "'log', 'scale' or 'none' (target during training)."
    )
    clip_predictions: bool = field_from(TrainingConfig, "clip_predictions", "Clip predictions to [0, 500,001].")
    ensemble_size: int = field_from(
        TrainingConfig, "ensemble_size", "Networks trained side by side and averaged (saved as one Sequential)."
    )
    seed: int = field_from(TrainingConfig, "seed", "Seed of weights and shuffling.")
    interval_level: float = field_from(IntervalConfig, "level")
    interval_difficulty_floor_dollars: float = field_from(IntervalConfig, "difficulty_floor_dollars")
    interval_difficulty_exponent: float = field_from(IntervalConfig, "difficulty_exponent")

    def to_training_config(self) -> TrainingConfig:
        return TrainingConfig(**self.model_dump(exclude=set(INTERVAL_FIELDS)))

    def to_interval_config(self) -> IntervalConfig:
        return IntervalConfig(**{name: getattr(self, field) for field, name in INTERVAL_FIELDS.items()})


# Run-config field -> IntervalConfig field (the calibration of the version's prediction intervals).
INTERVAL_FIELDS = {
    "interval_level": "level",
    "interval_difficulty_floor_dollars": "difficulty_floor_dollars",
    "interval_difficulty_exponent": "difficulty_exponent",
}


class EvaluationConfig(dg.Config):
    """The gate's limits (also recorded in the report, so each verdict can be re-read later)."""

    max_rmse_dollars: float = field_from(GateThresholds, "max_rmse_dollars")
    baseline_to_beat: str = field_from(GateThresholds, "baseline_to_beat")
    min_improvement_over_baseline: float = field_from(GateThresholds, "min_improvement_over_baseline")
    max_regression_vs_champion: float = field_from(GateThresholds, "max_regression_vs_champion")
    max_slice_rmse_ratio: float = field_from(GateThresholds, "max_slice_rmse_ratio")
    min_slice_rows: int = field_from(GateThresholds, "min_slice_rows")
    max_golden_regression_vs_champion: float = field_from(GateThresholds, "max_golden_regression_vs_champion")
    max_label_median_shift: float = field_from(GateThresholds, "max_label_median_shift")
    min_label_shift_rows: int = field_from(GateThresholds, "min_label_shift_rows")

    def to_thresholds(self) -> GateThresholds:
        return GateThresholds(**self.model_dump())
