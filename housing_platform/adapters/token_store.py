"""API tokens of the model server, kept hashed in a JSON file in the state folder.

A token is ``hp_<id>_<secret>``: ``id`` (8 hex characters) is public — it names the token in
``housing-platform token list``, in logs and in the capture store — and ``secret`` is 32 bytes from
:mod:`secrets` (256 bits). The file holds, per token, its id, name, scopes, creation time, optional
feedback rate limit, revocation time and the SHA-256 of the whole token; never the token itself.

Why SHA-256 and not a slow password hash (scrypt, bcrypt): a slow hash protects *low-entropy*
secrets chosen by people against a brute-force search of a leaked hash. These secrets are 256
random bits: no hash speed makes a 2**256 search feasible, and a fast hash keeps the check on every
request to about a microsecond, where scrypt would add tens of milliseconds to each prediction.
Verification is one dict lookup by id and one :func:`hmac.compare_digest` of the digests, so the
time taken says nothing about how much of a guessed secret was right.

Writes take an exclusive lock on ``<file>.lock`` and replace the file atomically (write to a
temporary file, then ``os.replace``), so two ``token create`` at once both land and a reader never
sees half a file. The file is created readable by its owner only (0600).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCOPE_PREDICT, SCOPE_FEEDBACK, SCOPE_ADMIN = "predict", "feedback", "admin"
SCOPES = (SCOPE_PREDICT, SCOPE_FEEDBACK, SCOPE_ADMIN)
TOKEN_PREFIX = "hp"
ID_HEX_CHARS = 8
SECRET_BYTES = 32
FILE_VERSION = 1


class TokenFileError(Exception):
    """The tokens file cannot be read or holds something that is not a token list (names the file)."""


class UnknownToken(KeyError):
    """No token has this id."""


class TokenRecord(BaseModel):
    """One token as stored: everything but the secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=rf"^[0-9a-f]{{{ID_HEX_CHARS}}}$")
    name: str
    scopes: tuple[str, ...] = Field(min_length=1)
    created_at: datetime
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    feedback_rate_per_minute: int | None = Field(
        None, ge=1, description="Labels this token may send per minute; None: the server's default."
    )
    revoked_at: datetime | None = None

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
        return tuple(sorted(set(scopes), key=SCOPES.index))

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class _TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = FILE_VERSION
    tokens: list[TokenRecord] = Field(default_factory=list)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_id_of(token: str) -> str | None:
    """The id part of a presented token, or None when it does not have the token's shape."""
    prefix, _, rest = token.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or len(token_id) != ID_HEX_CHARS or not secret:
        return None
    return token_id


@dataclass(frozen=True)
class TokenSet:
    """The tokens of one reading of the file, indexed for :meth:`authenticate`.

    ``configured`` is true when the file holds any token, revoked or not: revoking the last token
    must not switch authentication off.
    """

    records: tuple[TokenRecord, ...] = ()
    _active: dict[str, TokenRecord] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, records: Iterable[TokenRecord]) -> TokenSet:
        records = tuple(records)
        return cls(records, {record.id: record for record in records if record.active})

    @property
    def configured(self) -> bool:
        return bool(self.records)

    @property
    def active(self) -> tuple[TokenRecord, ...]:
        return tuple(self._active.values())

    def authenticate(self, token: str) -> TokenRecord | None:
        """The active token ``token`` is, or None (unknown id, wrong secret, revoked, malformed)."""
        token_id = token_id_of(token)
        record = self._active.get(token_id) if token_id else None
        if record is None:
            return None
        return record if hmac.compare_digest(token_digest(token), record.sha256) else None


class TokenStore:
    """The tokens file at ``path`` (``HousingSettings.tokens_path``: ``<HOUSING_HOME>/server/tokens.json``)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> TokenSet:
        """Every token in the file; an absent file holds none. :class:`TokenFileError` if it is unreadable."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return TokenSet.of(())
        except OSError as error:
            raise TokenFileError(f"cannot read the tokens file {self.path}: {error}") from error
        try:
            return TokenSet.of(_TokenFile.model_validate_json(text).tokens)
        except ValidationError as error:
            raise TokenFileError(f"the tokens file {self.path} is not a valid token list: {error}") from error

    def signature(self) -> tuple[int, int, int] | None:
        """(mtime ns, size, inode) of the file, None if absent: a change means it was rewritten."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def create(
        self,
        scopes: Iterable[str],
        name: str | None = None,
        feedback_rate_per_minute: int | None = None,
        now: datetime | None = None,
    ) -> tuple[str, TokenRecord]:
        """A new token: returns the token (shown once, never stored) and its stored record."""
        with self._locked() as current:
            taken = {record.id for record in current}
            token_id = secrets.token_hex(ID_HEX_CHARS // 2)
            while token_id in taken:
                token_id = secrets.token_hex(ID_HEX_CHARS // 2)
            token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
            record = TokenRecord(
                id=token_id,
                name=name or f"token-{token_id}",
                scopes=tuple(scopes),
                created_at=now or datetime.now(UTC),
                sha256=token_digest(token),
                feedback_rate_per_minute=feedback_rate_per_minute,
            )
            current.append(record)
        return token, record

    def revoke(self, token_id: str, now: datetime | None = None) -> TokenRecord:
        """Mark the token revoked (kept in the file, so its id stays known); :class:`UnknownToken` if absent."""
        with self._locked() as current:
            for i, record in enumerate(current):
                if record.id == token_id:
                    if record.active:
                        current[i] = record.model_copy(update={"revoked_at": now or datetime.now(UTC)})
                    return current[i]
        raise UnknownToken(token_id)

    @contextmanager
    def _locked(self) -> Iterator[list[TokenRecord]]:
        """The token list under an exclusive lock; written back atomically if the block changed it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = list(self.read().records)
            before = list(current)
            yield current
            if current != before:
                self._write(current)

    def _write(self, records: list[TokenRecord]) -> None:
        payload = _TokenFile(tokens=records).model_dump(mode="json")
        fd, temporary = tempfile.mkstemp(prefix=".tokens-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:  # mkstemp creates it 0600
                json.dump(payload, out, indent=2)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
