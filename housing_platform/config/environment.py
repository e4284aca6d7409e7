"""Process-wide environment the platform sets for the libraries it embeds, in one place.

Two things, both ``setdefault`` so that a user's own choice always wins: library telemetry off (an
offline, self-hosted platform has nothing to phone home to; ``housing_platform/__init__.py`` calls
:func:`disable_telemetry` once, before MLflow, Evidently or Dagster can be imported through the
package), and library caches and log levels kept inside the state folder and quiet
(:func:`apply_process_defaults`, called by every entry point that has its settings).
"""

from __future__ import annotations

import os

from housing_platform.config.settings import HousingSettings

# Phone-home telemetry of the libraries we embed. On an offline platform it can only time out, and
# users of a self-hosted platform expect it off. The Makefile exports the same names.
TELEMETRY_OPT_OUT = {
    "MLFLOW_DISABLE_TELEMETRY": "true",  # mlflow >= 3.2 usage telemetry
    "DO_NOT_TRACK": "true",  # honoured by mlflow and evidently
    "ITERATIVE_DO_NOT_TRACK": "true",  # evidently's telemetry client (iterative-telemetry)
    "DAGSTER_DISABLE_TELEMETRY": "true",  # belt and braces; dagster.yaml also disables it
}


def disable_telemetry() -> None:
    """Opt out of every embedded library's telemetry unless the user already chose otherwise."""
    for name, value in TELEMETRY_OPT_OUT.items():
        os.environ.setdefault(name, value)


def apply_process_defaults(settings: HousingSettings) -> None:
    """Keep library caches inside the state folder so nothing is written elsewhere."""
    disable_telemetry()
    cache = settings.home / "cache"
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
    os.environ.setdefault("KERAS_HOME", str(cache / "keras"))
    # TensorFlow's C++ start-up chatter (oneDNN notes, "no CUDA driver") is noise on a CPU machine.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
