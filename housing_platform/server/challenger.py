"""The challenger the server serves beside the champion during a safe rollout (``core/rollout.py``).

:class:`ChallengerFollower` is polled by the model manager's thread after each champion poll. It asks
the registry which version holds the alias ``challenger`` and with which rollout (the version's tags
``rollout`` = shadow | canary and ``rollout_share``, so every replica follows the one central
decision and ``housing-platform rollout set`` takes effect within a poll interval), and loads that
version through the same verified path as the champion (``load_fast_scorer``: the recorded sha256 of
each file, then the fast path against the pyfunc on the probe rows). Until it has loaded, and when the
alias is removed or the version is the champion itself, :attr:`ChallengerFollower.current` is None and
the champion answers alone. A refused version is logged once and tried again only after
``backoff_seconds`` (or at once when the alias moves). Reading :attr:`current` once per request gives
an immutable :class:`ActiveRollout`: a request never mixes two rollouts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveRollout:
    """The loaded challenger and how it is served; immutable (a request reads it once)."""

    served: object  # model_manager.ServedModel
    mode: str  # shadow | canary
    share: float  # canary: fraction of rows it answers


class ChallengerFollower:
    """Follows the ``challenger`` alias and its rollout tags (see the module docstring)."""

    def __init__(self, load: Callable[[str], object], backoff_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._load = load  # version -> ServedModel, through the manager's verified loader
        self.backoff_seconds = backoff_seconds
        self._clock = clock
        self.current: ActiveRollout | None = None
        self.problem: str | None = None  # why the alias's version is not served (refused), None when it is
        self.checked_at: datetime | None = None
        self._refused: tuple[str, float] | None = None  # (version, monotonic time of the refusal)

    def poll(self, registry, champion_version: str | None) -> None:
        """Resolve the alias and its tags; load a new challenger, follow a new rollout, or drop it."""
        from housing_platform.adapters.alias_moves import CHALLENGER_ALIAS, rollout_of

        try:
            version = registry.version_by_alias(CHALLENGER_ALIAS)
        except Exception as error:  # noqa: BLE001 - the registry down: keep the rollout as it is
            self.problem = f"{type(error).__name__}: {error}"
            return
        self.checked_at = datetime.now(UTC)
        if version is None or version.version == champion_version:
            if self.current is not None:
                logger.info("challenger %s no longer served (alias removed or promoted)", self.current.served.version)
            self.current, self.problem, self._refused = None, None, None
            return
        mode, share = rollout_of(version)
        share = share if share is not None else 0.0
        current = self.current
        if current is not None and current.served.version == version.version:
            if (current.mode, current.share) != (mode, share):
                logger.info("challenger %s: rollout %s %.3g -> %s %.3g", version.version, current.mode,
                            current.share, mode, share)
                self.current = replace(current, mode=mode, share=share)
            return
        if self._refused is not None and self._refused[0] == version.version \
                and self._clock() < self._refused[1] + self.backoff_seconds:
            return
        try:
            served = self._load(version.version)
        except Exception as error:  # noqa: BLE001 - a refused challenger leaves the champion answering alone
            self.problem = f"version {version.version} refused: {type(error).__name__}: {error}"
            self._refused = (version.version, self._clock())
            logger.warning("challenger %s", self.problem)
            return
        self.current, self.problem, self._refused = ActiveRollout(served, mode, share), None, None
        logger.info("challenger %s loaded beside champion %s: %s, share %.3g", version.version, champion_version,
                    mode, share)
