"""Broken copies of a loaded version's fast scorer, swapped into a running in-process server: the real scoring
path then fails the way a broken network would (the registry and the files on disk are untouched).

* :func:`non_finite_output` — the output layer's bias is NaN: every prediction is non-finite;
* :func:`raising_output` — the output layer's kernel is a row short: every score raises ValueError.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np


def non_finite_output(scorer):
    broken = copy.copy(scorer)
    last = scorer._layers[-1]
    broken._layers = [*scorer._layers[:-1], dataclasses.replace(last, bias=np.full_like(last.bias, np.nan))]
    return broken


def raising_output(scorer):
    broken = copy.copy(scorer)
    last = scorer._layers[-1]
    broken._layers = [*scorer._layers[:-1], dataclasses.replace(last, kernel=last.kernel[:-1])]
    return broken


def break_challenger(state, breaks, version: str) -> None:
    """Swap the loaded challenger's scorer (the follower keeps the rollout while the alias and mode stay)."""
    follower = state.manager.challenger
    rollout = follower.current
    assert rollout is not None and rollout.served.version == version, rollout
    follower.current = dataclasses.replace(rollout, served=dataclasses.replace(rollout.served,
                                                                               scorer=breaks(rollout.served.scorer)))


def break_champion(state, breaks, version: str) -> None:
    """Swap the served champion's scorer (the manager keeps a version while the alias names it)."""
    manager = state.manager
    served = manager.current
    assert served is not None and served.version == version, served
    manager._current = dataclasses.replace(served, scorer=breaks(served.scorer))
