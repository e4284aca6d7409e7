"""Which model version the server scores with, and how a new one replaces it without a failed request.

:class:`ModelManager` runs one background thread. It resolves the configured URI — for an alias
(``models:/housing_price_model@champion``) that means asking the registry which version the alias
points at now — and, when the answer differs from what is being served, loads that *version*
(``models:/name/N``, never the alias, so the alias moving again mid-load cannot mix versions) and
derives its fast path, verified against the pyfunc on probe rows. Only then does it swap: one
reference assignment, atomic in Python. A request reads :attr:`ModelManager.current` once and uses
that :class:`ServedModel` to the end, so it is scored wholly by the old or wholly by the new version;
the old one is garbage-collected when the last request holding it finishes.

A version that fails to load (or whose fast path differs from the registered model beyond a probe
row's float32 error bound: ``SkewError`` naming the row, see ``scoring/error_bound.py``) is not
served; the previous one stays, the failure is logged and counted, and the next poll tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from housing_platform.adapters.model_uri import ModelReference, resolve_version
from housing_platform.scoring.scorer import FastScorer
from housing_platform.scoring.verification import load_fast_scorer

logger = logging.getLogger(__name__)


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


Loader = Callable[[str], FastScorer]


class ModelManager:
    """Loads the version behind ``model_uri`` and keeps following it (see the module docstring)."""

    def __init__(
        self,
        model_uri: str,
        registry_factory: Callable[[], object],
        *,
        poll_interval_seconds: float = 10.0,
        load_retry_seconds: float = 5.0,
        loader: Loader = load_fast_scorer,
        on_loaded: Callable[[ServedModel, ServedModel | None], None] | None = None,
        on_failure: Callable[[Exception], None] | None = None,
    ):
        self.reference = ModelReference.parse(model_uri)
        self._registry_factory = registry_factory
        self.registry = None  # created on first use, in the manager's thread (importing MLflow takes seconds)
        self.poll_interval_seconds = poll_interval_seconds
        self.load_retry_seconds = load_retry_seconds
        self._loader = loader
        self._on_loaded = on_loaded
        self._on_failure = on_failure
        self._current: ServedModel | None = None
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._poll_lock = threading.Lock()
        self._thread: threading.Thread | None = None

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
        """Resolve once and swap if the version changed; True if a new version is now served."""
        with self._poll_lock:  # the thread and a caller never load the same version twice at once
            try:
                if self.registry is None:
                    self.registry = self._registry_factory()
                version = resolve_version(self.registry, self.reference)
                current = self._current
                if current is not None and current.version == version:
                    self._last_error = None
                    return False
                served = self._load(version)
            except Exception as error:  # noqa: BLE001 - any failure keeps the old version serving
                self._last_error = f"{type(error).__name__}: {error}"
                logger.warning("model %s: %s (keeping %s)", self.reference.uri, self._last_error,
                               f"version {self._current.version}" if self._current else "no model")
                if self._on_failure is not None:
                    self._on_failure(error)
                return False
            previous, self._current = self._current, served  # the swap
            self._last_error = None
            logger.info(
                "model %s: serving version %s (loaded in %.1f s%s)", self.reference.uri, served.version,
                served.load_seconds, f", replacing version {previous.version}" if previous else "",
            )
            if self._on_loaded is not None:
                self._on_loaded(served, previous)
            return True

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
            if self._current is None:
                wait = self.load_retry_seconds
            elif self.follows_alias and self.poll_interval_seconds > 0:
                wait = self.poll_interval_seconds
            else:
                return  # a fixed version (or polling off) is loaded once
            self._stop.wait(wait)
