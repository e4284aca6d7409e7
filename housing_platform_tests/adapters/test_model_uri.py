"""``models:/`` URIs: parsed into a name and an alias or version, resolved to a concrete version."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from housing_platform.adapters.model_uri import ModelReference, resolve_version
from housing_platform.scoring.errors import ScoringError


def test_model_reference_parses_alias_and_version_uris():
    assert ModelReference.parse("models:/housing_price_model@champion") == ModelReference(
        "housing_price_model", alias="champion"
    )
    assert ModelReference.parse("models:/m/7").version == "7"
    with pytest.raises(ScoringError, match="models:/<name>@<alias>"):
        ModelReference.parse("runs:/abc/model")


class _Registry:
    """The two look-ups resolve_version makes, over a fixed set of versions and aliases."""

    def __init__(self, versions: list[str], aliases: dict[str, str]):
        self.client = SimpleNamespace(search_model_versions=lambda _: [SimpleNamespace(version=v) for v in versions])
        self._aliases = aliases

    def version_by_alias(self, alias: str):
        version = self._aliases.get(alias)
        return None if version is None else SimpleNamespace(version=version)


def test_resolve_version_follows_the_alias_or_takes_the_version():
    registry = _Registry(["1", "10", "2"], {"champion": "2"})

    assert resolve_version(registry, ModelReference.parse("models:/m@champion")) == "2"
    assert resolve_version(registry, ModelReference.parse("models:/m/7")) == "7"
    assert resolve_version(registry, ModelReference.parse("models:/m/latest")) == "10"
    assert ModelReference.parse("models:/m@champion").uri == "models:/m@champion"
    with pytest.raises(ScoringError, match="alias 'nobody'"):
        resolve_version(registry, ModelReference.parse("models:/m@nobody"))
    with pytest.raises(ScoringError, match="has no versions"):
        resolve_version(_Registry([], {}), ModelReference.parse("models:/m/latest"))
