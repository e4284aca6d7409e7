"""The errors of the scoring path: a model that cannot be ported, a port that disagrees, bad input.

One small module so that every scoring module, and the ``models:/`` URI adapter, raise the same
family: callers (the CLI, the model server) catch :class:`ScoringError` whatever step failed.
"""

from __future__ import annotations


class ScoringError(Exception):
    """A model cannot be turned into a fast scorer, or input cannot be scored."""


class UnsupportedModelError(ScoringError):
    """The network or transformer holds something the numpy port does not implement."""


class SkewError(ScoringError):
    """The fast path disagrees with the registered model on probe rows: the version is not served."""
