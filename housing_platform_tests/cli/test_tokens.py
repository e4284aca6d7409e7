"""`housing-platform token create | list | revoke`, and `serve` refusing a non-loopback host without tokens."""

from __future__ import annotations

import pytest

from housing_platform.adapters.token_store import TokenStore
from housing_platform.cli.main import EXIT_INVALID_ARGUMENTS, EXIT_OK, EXIT_UNREADABLE, main
from housing_platform.devtools.processes import free_port


@pytest.fixture
def store(housing_settings) -> TokenStore:
    return TokenStore(housing_settings.tokens_path)


def test_create_prints_the_token_once_and_stores_only_its_hash(store, capsys):
    code = main(["token", "create", "--scope", "predict", "--scope", "feedback", "--name", "labeller",
                 "--feedback-rate-per-minute", "30"])

    out, err = capsys.readouterr()
    token = out.strip()
    assert code == EXIT_OK and out.count("\n") == 1 and token.startswith("hp_")  # stdout: the token alone
    (record,) = store.read().records
    assert store.read().authenticate(token) == record
    assert (record.name, record.scopes, record.feedback_rate_per_minute) == ("labeller", ("predict", "feedback"), 30)
    assert record.id in err and "shown once" in err and token not in err
    assert token not in store.path.read_text()
    assert store.path.relative_to(store.path.parents[1]).as_posix() == "server/tokens.json"  # in the state folder


def test_list_shows_ids_names_scopes_and_status_but_no_secret(store, capsys):
    main(["token", "create", "--scope", "admin", "--name", "scraper"])
    token = capsys.readouterr().out.strip()

    assert main(["token", "list"]) == EXIT_OK
    listing = capsys.readouterr().out
    (record,) = store.read().records
    assert record.id in listing and "scraper" in listing and "admin" in listing and "active" in listing
    assert token not in listing and record.sha256 not in listing


def test_revoke_marks_the_token_revoked_and_an_unknown_id_is_refused(store, capsys):
    main(["token", "create", "--scope", "predict"])
    token = capsys.readouterr().out.strip()
    (record,) = store.read().records

    assert main(["token", "revoke", record.id]) == EXIT_OK
    assert store.read().authenticate(token) is None
    main(["token", "list"])
    assert "revoked" in capsys.readouterr().out
    assert main(["token", "revoke", "00000000"]) == EXIT_INVALID_ARGUMENTS
    assert "no token has the id" in capsys.readouterr().err


def test_create_refuses_unknown_scopes_and_rates_below_one(store, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["token", "create", "--scope", "root"])
    assert refused.value.code == 2
    assert main(["token", "create", "--scope", "feedback", "--feedback-rate-per-minute", "0"]) == EXIT_INVALID_ARGUMENTS
    assert not store.path.exists()


def test_serve_refuses_a_non_loopback_host_without_an_active_token(store, capsys):
    port = str(free_port())
    assert main(["serve", "--host", "0.0.0.0", "--port", port]) == EXIT_INVALID_ARGUMENTS
    err = capsys.readouterr().err
    assert "0.0.0.0" in err and "not a loopback address" in err and "token create" in err

    _, record = store.create(["predict"])
    store.revoke(record.id)  # a revoked token is no token
    assert main(["serve", "--host", "0.0.0.0", "--port", port]) == EXIT_INVALID_ARGUMENTS


def test_serve_refuses_an_unreadable_tokens_file_even_on_loopback(store, capsys):
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json")
    assert main(["serve", "--host", "127.0.0.1", "--port", str(free_port())]) == EXIT_INVALID_ARGUMENTS
    assert str(store.path) in capsys.readouterr().err
    assert main(["token", "list"]) == EXIT_UNREADABLE
