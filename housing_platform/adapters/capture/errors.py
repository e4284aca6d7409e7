"""The errors the capture store raises on purpose, and the rule for which database errors are
transient (worth retrying): :class:`FeedbackRejected` and its subclasses carry the offending request
ids so the API can name them in a 404 or 409, and :class:`CaptureStoreUnavailable` means "retry
later" (a 503).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import exc as sa_exc


class CaptureStoreError(Exception):
    """Base class of the errors the capture store raises on purpose."""


class CaptureStoreUnavailable(CaptureStoreError):
    """The store cannot be reached (or captures the request depends on are still queued); retry later."""


class FeedbackRejected(CaptureStoreError):
    """Feedback refused as a whole: nothing of the call was recorded. ``request_ids`` are the culprits."""

    reason = "rejected"

    def __init__(self, request_ids: Iterable[str]):
        self.request_ids: tuple[str, ...] = tuple(request_ids)
        shown = ", ".join(repr(i) for i in self.request_ids[:10])
        more = f" and {len(self.request_ids) - 10} more" if len(self.request_ids) > 10 else ""
        super().__init__(f"{self.reason} for {len(self.request_ids)} request id(s): {shown}{more}")


class UnknownRequestIds(FeedbackRejected):
    """No capture exists for these request ids (never scored, sampled out, or dropped)."""

    reason = "no capture"


class DuplicateFeedback(FeedbackRejected):
    """Feedback for these request ids is already recorded, or repeated within the call."""

    reason = "feedback already given"


def is_transient(exc: BaseException) -> bool:
    """Errors that mean "the store is unreachable or busy", worth retrying the same rows later."""
    if isinstance(exc, OSError | sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        # ProgrammingError covers "relation does not exist" after a table or schema was dropped:
        # the retry recreates it.
        return exc.connection_invalidated or isinstance(
            exc,
            sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.ProgrammingError | sa_exc.InternalError,
        )
    return False


def error_summary(exc: BaseException) -> str:
    """``Type: first line of the message`` (the driver's own message when SQLAlchemy wraps one), for logs."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
