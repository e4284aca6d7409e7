"""Bearer-token authentication with scopes, and per-token rate limits on feedback.

Which route needs which scope: ``POST /v1/predict`` → ``predict``, ``POST /v1/feedback`` →
``feedback``, ``GET /metrics`` → ``admin``. ``/health`` and ``/ready`` stay open (load balancers
probe them), and so do ``/docs`` and ``/openapi.json`` (they describe the API, not its data).

Authentication is on when the tokens file (:mod:`housing_platform.adapters.token_store`) holds any
token, revoked or not, or when ``require_tokens`` is set (the CLI sets it for a non-loopback host,
where :func:`startup_problem` also refuses to start without an active token). With neither — a
fresh state folder served on loopback, as ``make demo`` does — every route is open, as before.
The file is re-read when its (mtime, size, inode) changes, checked at most every
``tokens_check_interval_seconds``: ``housing-platform token revoke`` takes effect within that, with
no restart. A file that becomes unreadable keeps the last good tokens (and logs why); one unreadable
at start stops the server.

Refusals: 401 with ``WWW-Authenticate: Bearer`` (no token, or an unknown, revoked or malformed one),
403 naming the missing scope, 429 with ``Retry-After`` when a token sent more labels than its
per-minute limit (each counted on ``/metrics`` as ``housing_auth_refusals_total{route, reason}``).
The checked token's id (never its secret) is on ``request.state.token_id`` (None when auth is off).

The feedback limit counts *labels* (feedback items), not requests, in a moving 60-second window:
``limits``' ``MovingWindowRateLimiter`` on its in-process memory storage, a maintained library
(the one behind Flask-Limiter and SlowAPI) whose moving window has no burst at window edges and takes
a batch as one atomic hit of ``cost`` labels. ``Retry-After`` is the whole seconds until the oldest
label in the window leaves it — exact for one label; a batch may need to wait again. A batch larger
than the token's whole limit can never pass and is refused with 413.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from housing_platform.adapters.token_store import TokenFileError, TokenRecord, TokenSet, TokenStore
from housing_platform.server.metrics import AUTH_REFUSAL_REASONS, ServingMetrics
from housing_platform.server.server_config import ServingConfig

logger = logging.getLogger(__name__)

SECURITY_SCHEME = "HTTPBearer"
REALM = 'Bearer realm="housing_platform"'
RATE_WINDOW_SECONDS = 60


def is_loopback(host: str) -> bool:
    """Whether ``host`` (what ``serve --host`` binds) only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def startup_problem(host: str, tokens_file: str | None) -> str | None:
    """Why the server must not start on ``host`` with the tokens in ``tokens_file``, or None (the CLI exits 2)."""
    try:
        tokens = TokenStore(tokens_file).read() if tokens_file else TokenSet.of(())
    except TokenFileError as error:
        return str(error)
    if is_loopback(host) or tokens.active:
        return None
    return (
        f"refusing to serve on {host}: it is not a loopback address and no active API token is configured "
        f"(tokens file: {tokens_file}). Create one with `housing-platform token create --scope predict` "
        "(add --scope feedback / --scope admin as needed), or serve on 127.0.0.1"
    )


def _refusal(status: int, body: dict, headers: dict[str, str]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


class FeedbackRateLimiter:
    """At most N labels per token in any 60-second window (N: the token's own limit or the server's default)."""

    def __init__(self, default_per_minute: int):
        self.default_per_minute = default_per_minute
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._items: dict[int, RateLimitItemPerMinute] = {}

    def per_minute(self, token: TokenRecord) -> int:
        return token.feedback_rate_per_minute or self.default_per_minute

    def take(self, token: TokenRecord, labels: int) -> int | None:
        """Count ``labels`` against ``token``; None if they fit, else the seconds to wait (at least 1)."""
        amount = self.per_minute(token)
        item = self._items.get(amount)
        if item is None:
            item = self._items[amount] = RateLimitItemPerMinute(amount, namespace="feedback")
        if self._limiter.hit(item, token.id, cost=labels):
            return None
        reset_at = self._limiter.get_window_stats(item, token.id).reset_time
        return max(1, math.ceil(reset_at - time.time()))


class TokenAuth:
    """The server's token check: :meth:`refuse` on each protected route, :meth:`limit_feedback` on feedback."""

    def __init__(self, config: ServingConfig, metrics: ServingMetrics, scopes_by_route: dict[str, str]):
        self.store = TokenStore(config.tokens_file) if config.tokens_file else None
        self.required = config.require_tokens
        self.check_interval = config.tokens_check_interval_seconds
        self.limiter = FeedbackRateLimiter(config.feedback_rate_per_minute)
        self.metrics = metrics
        self.scopes_by_route = dict(scopes_by_route)
        for route in self.scopes_by_route:  # every series present from the start, at 0
            for reason in AUTH_REFUSAL_REASONS:
                metrics.auth_refusals.labels(route, reason)
        self.tokens = TokenSet.of(())
        self._signature: tuple[int, int, int] | None = None
        self._next_check = 0.0
        if self.store is not None:
            self._signature = self.store.signature()
            self.tokens = self.store.read()  # unreadable at start: raise, the server does not start

    @property
    def enabled(self) -> bool:
        return self.required or self.tokens.configured

    def _reload_if_changed(self) -> None:
        self._next_check = time.monotonic() + self.check_interval
        signature = self.store.signature()
        if signature == self._signature:
            return
        try:
            tokens = self.store.read()
        except TokenFileError as error:
            logger.error("keeping the %d tokens read before: %s", len(self.tokens.records), error)
        else:
            logger.info("tokens file changed: %d active token(s)", len(tokens.active))
            self.tokens = tokens
        self._signature = signature

    def refuse(self, request: Request, route: str) -> Response | None:
        """None when ``request`` may use ``route`` (its token on ``request.state``), else the 401/403 answer."""
        if self.store is not None and time.monotonic() >= self._next_check:
            self._reload_if_changed()
        state = request.state
        if not self.enabled:
            state.token = state.token_id = None
            return None
        scope = self.scopes_by_route[route]
        header = request.headers.get("authorization")
        if header is None:
            return self._refused(route, "missing_token", 401, {
                "detail": f"authentication required: send `Authorization: Bearer <token>` with a token of scope "
                          f"'{scope}' (create one with `housing-platform token create --scope {scope}`)",
                "required_scope": scope,
            }, REALM)
        kind, _, credentials = header.partition(" ")
        token = self.tokens.authenticate(credentials.strip()) if kind.lower() == "bearer" else None
        if token is None:
            return self._refused(route, "invalid_token", 401, {
                "detail": "the bearer token is unknown, revoked or malformed (expected `Authorization: Bearer "
                          "hp_<id>_<secret>`)",
                "required_scope": scope,
            }, f'{REALM}, error="invalid_token"')
        if scope not in token.scopes:
            return self._refused(route, "missing_scope", 403, {
                "detail": f"token {token.id} ({token.name}) lacks the scope '{scope}' needed for {route}; "
                          f"it has: {', '.join(token.scopes)}",
                "required_scope": scope,
                "token_id": token.id,
            }, f'{REALM}, error="insufficient_scope", scope="{scope}"')
        state.token, state.token_id = token, token.id
        return None

    def limit_feedback(self, request: Request, route: str, labels: int) -> Response | None:
        """None when the request's token may send ``labels`` more labels now, else the 413/429 answer."""
        token = getattr(request.state, "token", None)
        if token is None:  # auth off: no identity to count against
            return None
        per_minute = self.limiter.per_minute(token)
        if labels > per_minute:
            return _refusal(413, {
                "detail": f"{labels:,} feedback items in one request, but token {token.id} may send at most "
                          f"{per_minute:,} per minute; split the request",
            }, {})
        retry_after = self.limiter.take(token, labels)
        if retry_after is None:
            return None
        return self._refused(route, "rate_limited", 429, {
            "detail": f"token {token.id} ({token.name}) may send {per_minute:,} labels per minute and has used "
                      f"them; retry in {retry_after} s",
            "token_id": token.id,
            "retry_after_seconds": retry_after,
        }, None, retry_after)

    def _refused(self, route: str, reason: str, status: int, body: dict, challenge: str | None,
                 retry_after: int | None = None) -> Response:
        self.metrics.auth_refusals.labels(route, reason).inc()
        headers = {"www-authenticate": challenge} if challenge else {}
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        return _refusal(status, body, headers)


def document_security(app: FastAPI, scopes_by_route: dict[str, str], rate_limited: tuple[str, ...]) -> None:
    """Add the bearer scheme, each protected operation's scope and its 401/403 (and 429) to the OpenAPI doc."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
            "type": "http", "scheme": "bearer",
            "description": "An API token from `housing-platform token create --scope <predict|feedback|admin>`. "
            "Required once the server's tokens file holds a token, and always on a non-loopback address.",
        }
        message = {"application/json": {"schema": {"$ref": "#/components/schemas/MessageResponse"}}}
        challenge = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer challenge (RFC 6750)."}}
        for route, scope in scopes_by_route.items():
            for operation in schema.get("paths", {}).get(route, {}).values():
                operation["security"] = [{SECURITY_SCHEME: []}]
                operation["description"] = (operation.get("description", "") + f"\n\nNeeds a token of scope `{scope}` "
                                            "when authentication is on.").strip()
                responses = operation.setdefault("responses", {})
                responses["401"] = {"description": "No bearer token, or an unknown, revoked or malformed one.",
                                    "headers": challenge, "content": message}
                responses["403"] = {"description": f"The token lacks the scope `{scope}` (named in `detail`).",
                                    "headers": challenge, "content": message}
                if route in rate_limited:
                    responses["429"] = {
                        "description": "The token sent more labels than its per-minute limit.", "content": message,
                        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
                    }
        return schema

    app.openapi = openapi
