"""Which model version the server scores with, and how a new one replaces it without a failed request.

:class:`ModelManager` runs one background thread. It resolves the configured URI — for an alias
(``models:/housing_price_model@champion``) that means asking the registry which version the alias
points at now — and, when the answer differs from what is being served, loads that *version*
(``models:/name/N``, never the alias, so the alias moving again mid-load cannot mix versions) and
derives its fast path, verified against the pyfunc on probe rows. Only then does it swap: one
reference assignment, atomic in Python. A request reads :attr:`ModelManager.current` once and uses
that :class:`ServedModel` to the end, so it is scored wholly by the old or wholly by the new version;
the old one is garbage-collected when the last request holding it finishes.

A version that fails to load (or whose files differ from the sha256 the registry recorded:
``ArtifactIntegrityError`` naming the file and both hashes, see ``scoring/integrity.py``; or whose fast
path differs from the registered model beyond a probe row's float32 error bound: ``SkewError`` naming
the row, see ``scoring/error_bound.py``) is *refused*:
the previous one keeps serving, the refusal is logged once with its reason and counted by kind
(:data:`REFUSAL_KINDS`), and the version is not loaded again before its back-off expires — the
first wait is ``refused_load_backoff_seconds``, doubling after each failed attempt up to
``refused_load_backoff_max_seconds`` (:class:`~housing_platform.server.server_config.ServingConfig`).
Polling the alias stays cheap and goes on: when the alias moves, the new target is tried at once.
:meth:`ModelManager.status` says what is served, what the alias points to and why they differ.

Following ``champion``, the manager also polls the ``challenger`` alias of a safe rollout after each
poll (:class:`~housing_platform.server.challenger.ChallengerFollower`), loading it through the same
verified loader.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from housing_platform.adapters.model_uri import ModelReference, resolve_version
from housing_platform.scoring.errors import SkewError, UnsupportedModelError
from housing_platform.scoring.integrity import ArtifactIntegrityError
from housing_platform.scoring.scorer import FastScorer
from housing_platform.scoring.verification import load_fast_scorer
from housing_platform.server.challenger import ChallengerFollower
from housing_platform.server.server_config import serving_default

logger = logging.getLogger(__name__)

# Why a version was refused, as a metric label: bounded, so a scrape never grows with error texts.
SKEW, UNSUPPORTED_MODEL, INTEGRITY, LOAD_ERROR = "skew", "unsupported_model", "integrity", "load_error"
REFUSAL_KINDS = (SKEW, UNSUPPORTED_MODEL, INTEGRITY, LOAD_ERROR)


def refusal_kind(error: BaseException) -> str:
    """:data:`SKEW` (the fast path differs), :data:`UNSUPPORTED_MODEL` (the port cannot read it),
    :data:`INTEGRITY` (a model file's sha256 differs from the registry's record) or :data:`LOAD_ERROR`
    (anything else: artifacts unreachable, a broken file)."""
    if isinstance(error, ArtifactIntegrityError):
        return INTEGRITY
    if isinstance(error, SkewError):
        return SKEW
    if isinstance(error, UnsupportedModelError):
        return UNSUPPORTED_MODEL
    return LOAD_ERROR


@dataclass(frozen=True)
class ServedModel:
    """One loaded version: everything a request needs, immutable."""

    name: str
    version: str
    model_uri: str  # models:/name/N
    run_id: str | None
    scorer: FastScorer
    loaded_at: datetime
    load_seconds: float


@dataclass(frozen=True)
class Refusal:
    """A version that could not be served, and when it will be tried again."""

    version: str
    kind: str  # one of REFUSAL_KINDS
    reason: str  # "SkewError: ..." — the error, naming the row, deviation and bound for a skew
    attempts: int  # failed load attempts of this version in a row
    next_attempt: float  # on the manager's clock (time.monotonic)
    next_attempt_at: datetime  # the same moment, wall-clock UTC (for /ready)


@dataclass(frozen=True)
class ServingStatus:
    """What is served, what the followed alias (or fixed version) names, and why they differ."""

    serving_version: str | None
    target_version: str | None  # the alias's version at the last successful poll; None before one
    checked_at: datetime | None  # when the registry last answered
    refusal: Refusal | None  # the target's refusal while it backs off
    last_error: str | None

    @property
    def differs(self) -> bool:
        """True when the registry names a version the server is not serving."""
        return self.target_version is not None and self.serving_version != self.target_version

    @property
    def reason(self) -> str | None:
        """Why the served version is not the target (None when it is)."""
        if self.target_version is None:
            return f"the registry has not named a version yet: {self.last_error}" if self.last_error else None
        if not self.differs:
            return None
        refusal = self.refusal
        if refusal is not None and refusal.version == self.target_version:
            return (f"version {refusal.version} refused ({refusal.kind}, attempt {refusal.attempts}): "
                    f"{refusal.reason}; "
                    f"next attempt at {refusal.next_attempt_at.isoformat(timespec='seconds')} unless the alias moves")
        return f"version {self.target_version} is loading"


Loader = Callable[[str], FastScorer]


class ModelManager:
    """Loads the version behind ``model_uri`` and keeps following it (see the module docstring)."""

    def __init__(
        self,
        model_uri: str,
        registry_factory: Callable[[], object],
        *,
        poll_interval_seconds: float = serving_default("poll_interval_seconds"),
        load_retry_seconds: float = serving_default("load_retry_seconds"),
        backoff_seconds: float = serving_default("refused_load_backoff_seconds"),
        backoff_max_seconds: float = serving_default("refused_load_backoff_max_seconds"),
        loader: Loader = load_fast_scorer,
        on_loaded: Callable[[ServedModel, ServedModel | None], None] | None = None,
        on_failure: Callable[[Exception, Refusal | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        follow_challenger: bool = False,
    ):
        self.reference = ModelReference.parse(model_uri)
        self._registry_factory = registry_factory
        self.registry = None  # created on first use, in the manager's thread (importing MLflow takes seconds)
        self.poll_interval_seconds = poll_interval_seconds
        self.load_retry_seconds = load_retry_seconds
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self._loader = loader
        self._on_loaded = on_loaded
        self._on_failure = on_failure
        self._clock = clock
        self._current: ServedModel | None = None
        self._target: str | None = None
        self._checked_at: datetime | None = None
        self._refusal: Refusal | None = None
        self._last_error: str | None = None
        self._resolve_error: str | None = None  # logged when it starts or changes, not on every poll
        self._stop = threading.Event()
        self._poll_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.challenger = ChallengerFollower(self._load, backoff_seconds, clock) if follow_challenger else None

    @property
    def current(self) -> ServedModel | None:
        """The version serving now; read it once per request."""
        return self._current

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def follows_alias(self) -> bool:
        return self.reference.alias is not None

    def status(self) -> ServingStatus:
        current = self._current
        return ServingStatus(
            serving_version=current.version if current is not None else None,
            target_version=self._target,
            checked_at=self._checked_at,
            refusal=self._refusal,
            last_error=self._last_error,
        )

    def backoff(self, attempts: int) -> float:
        """Seconds before the next load of a version refused ``attempts`` times in a row."""
        return min(self.backoff_max_seconds, self.backoff_seconds * 2.0 ** (attempts - 1))

    def start(self) -> None:
        """Load in the background (``/ready`` says when) and keep polling."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-manager", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def check_now(self) -> bool:
        """Resolve once and swap if the version changed; True if a new version is now served.

        A version refused before is loaded again only once its back-off has expired.
        """
        with self._poll_lock:  # the thread and a caller never load the same version twice at once
            version = self._resolve()
            if version is None:
                return False
            current = self._current
            if current is not None and current.version == version:
                self._refusal, self._last_error = None, None
                return False
            refusal = self._refusal if self._refusal is not None and self._refusal.version == version else None
            if refusal is not None and self._clock() < refusal.next_attempt:
                return False  # refused before and still backing off: no reload, no log line
            rollout = self.challenger.current if self.challenger is not None else None
            try:  # a promoted challenger is already loaded and verified: swap to it without loading again
                served = rollout.served if rollout is not None and rollout.served.version == version \
                    else self._load(version)
            except Exception as error:  # noqa: BLE001 - any failure keeps the old version serving
                self._refuse(version, error, refusal.attempts + 1 if refusal is not None else 1)
                return False
            self._refusal, self._last_error = None, None
            previous, self._current = self._current, served  # the swap
            logger.info(
                "model %s: serving version %s (loaded in %.1f s%s)", self.reference.uri, served.version,
                served.load_seconds, f", replacing version {previous.version}" if previous else "",
            )
            if self._on_loaded is not None:
                self._on_loaded(served, previous)
            return True

    def poll_challenger(self) -> None:
        """Follow the ``challenger`` alias and its rollout (only while a champion is served)."""
        current = self._current
        if self.challenger is not None and self.registry is not None and current is not None:
            with self._poll_lock:
                self.challenger.poll(self.registry, current.version)

    def _resolve(self) -> str | None:
        """The version the reference names now; None (logged when the error is new) if the registry fails."""
        try:
            if self.registry is None:
                self.registry = self._registry_factory()
            version = resolve_version(self.registry, self.reference)
        except Exception as error:  # noqa: BLE001 - the registry down or the alias missing: keep serving
            message = f"{type(error).__name__}: {error}"
            self._last_error = message
            if message != self._resolve_error:
                logger.warning("model %s: %s (keeping %s)", self.reference.uri, message, self._serving_text())
            self._resolve_error = message
            if self._on_failure is not None:
                self._on_failure(error, None)
            return None
        if self._resolve_error is not None:
            logger.info("model %s: the registry answers again (version %s)", self.reference.uri, version)
            self._resolve_error = None
        self._target, self._checked_at = version, datetime.now(UTC)
        return version

    def _refuse(self, version: str, error: Exception, attempts: int) -> None:
        wait = self.backoff(attempts)
        reason = f"{type(error).__name__}: {error}"
        refusal = Refusal(version, refusal_kind(error), reason, attempts, self._clock() + wait,
                          datetime.now(UTC) + timedelta(seconds=wait))
        self._refusal, self._last_error = refusal, reason
        logger.warning(
            "model %s: version %s refused (%s, attempt %d): %s; keeping %s; "
            "next attempt in %.0f s unless the alias moves",
            self.reference.uri, version, refusal.kind, attempts, reason, self._serving_text(), wait,
        )
        if self._on_failure is not None:
            self._on_failure(error, refusal)

    def _serving_text(self) -> str:
        return f"version {self._current.version}" if self._current else "no model"

    def _load(self, version: str) -> ServedModel:
        uri = f"models:/{self.reference.name}/{version}"
        started = time.perf_counter()
        scorer = self._loader(uri)
        run_id = None
        try:
            run_id = self.registry.get_version(version).run_id
        except Exception:  # noqa: BLE001 - lineage only; the model itself loaded
            logger.debug("could not read the run id of %s", uri, exc_info=True)
        return ServedModel(
            name=self.reference.name,
            version=str(version),
            model_uri=uri,
            run_id=run_id,
            scorer=scorer,
            loaded_at=datetime.now(UTC),
            load_seconds=time.perf_counter() - started,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check_now()
            self.poll_challenger()
            if self._current is None:
                wait = self.load_retry_seconds
            elif self.follows_alias and self.poll_interval_seconds > 0:
                wait = self.poll_interval_seconds
            else:
                return  # a fixed version (or polling off) is loaded once
            self._stop.wait(wait)
