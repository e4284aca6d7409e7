"""The tokens file: hashed at rest, verified by id + constant-time digest comparison, revocable, safe to write concurrently."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import ValidationError

from housing_platform.adapters.token_store import (
    SCOPE_FEEDBACK,
    SCOPE_PREDICT,
    TokenFileError,
    TokenStore,
    UnknownToken,
    token_digest,
)


@pytest.fixture
def store(tmp_path) -> TokenStore:
    return TokenStore(tmp_path / "server" / "tokens.json")


def test_created_token_authenticates_and_only_its_hash_is_stored(store):
    token, record = store.create([SCOPE_FEEDBACK, SCOPE_PREDICT], name="labeller", feedback_rate_per_minute=30)

    text = store.path.read_text()
    assert token not in text and token.split("_", 2)[2] not in text  # neither the token nor its secret
    assert token_digest(token) in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    tokens = store.read()
    assert tokens.authenticate(token) == record
    assert record.scopes == (SCOPE_PREDICT, SCOPE_FEEDBACK)  # in the canonical order
    assert (record.name, record.feedback_rate_per_minute) == ("labeller", 30)
    assert len(token.split("_", 2)[2]) >= 43  # 32 random bytes, base64url


def test_wrong_secret_unknown_id_and_malformed_tokens_are_refused(store):
    token, record = store.create([SCOPE_PREDICT])
    tokens = store.read()
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    other_id = token.replace(record.id, "0" * 8 if record.id != "0" * 8 else "1" * 8)
    for presented in (flipped, other_id, "", "hp__x", "Bearer " + token, token + "x", token.upper()):
        assert tokens.authenticate(presented) is None, presented


def test_revoked_token_is_refused_but_auth_stays_configured(store):
    token, record = store.create([SCOPE_PREDICT])
    revoked = store.revoke(record.id)

    assert revoked.revoked_at is not None
    tokens = store.read()
    assert tokens.authenticate(token) is None
    assert tokens.configured and tokens.active == ()  # revoking the last token must not switch auth off
    assert store.revoke(record.id).revoked_at == revoked.revoked_at  # revoking again changes nothing
    with pytest.raises(UnknownToken):
        store.revoke("deadbeef")


def test_absent_file_holds_no_tokens_and_a_corrupt_one_is_named(store):
    assert not store.read().configured and store.signature() is None
    store.path.parent.mkdir(parents=True)
    store.path.write_text('{"version": 1, "tokens": [{"id": "nothex!!"}]}')
    with pytest.raises(TokenFileError, match="tokens.json"):
        store.read()


def test_unknown_scope_is_refused(store):
    with pytest.raises(ValidationError, match="unknown scope"):
        store.create(["root"])
    assert not store.path.exists()


def test_concurrent_creates_all_land(store):
    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda i: store.create([SCOPE_PREDICT], name=f"t{i}"), range(24)))
    tokens = store.read()
    assert len(tokens.records) == 24
    assert all(tokens.authenticate(token) == record for token, record in created)


def test_signature_changes_when_the_file_is_rewritten(store):
    store.create([SCOPE_PREDICT])
    before = store.signature()
    store.create([SCOPE_PREDICT])
    assert store.signature() != before
