"""``models:/`` URIs: taking one apart, and asking the registry which version it names right now.

The server, the CLI and the batch-scoring asset accept ``models:/<name>@<alias>`` or
``models:/<name>/<version>`` (``latest`` allowed) and always load a concrete version, so an alias
that moves mid-load cannot mix versions. Problems raise
:class:`~housing_platform.scoring.errors.ScoringError`, the error those callers already report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from housing_platform.scoring.errors import ScoringError

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))$")


@dataclass(frozen=True)
class ModelReference:
    """A ``models:/`` URI taken apart: a registered model name and an alias or a version."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelReference:
        match = _MODELS_URI.match(uri.strip())
        if not match:
            raise ScoringError(
                f"model URI {uri!r} is not of the form models:/<name>@<alias> or models:/<name>/<version>"
            )
        return cls(match["name"], match["alias"], match["version"])

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def resolve_version(registry, reference: ModelReference) -> str:
    """The version number an alias points at now (or the fixed version); ScoringError if none.

    ``registry`` is a :class:`housing_platform.adapters.mlflow_registry.ModelRegistry`.
    """
    if reference.alias is None:
        if reference.version == "latest":
            versions = registry.client.search_model_versions(f"name='{reference.name}'")
            if not versions:
                raise ScoringError(f"registered model {reference.name!r} has no versions")
            return str(max(int(v.version) for v in versions))
        return str(reference.version)
    found = registry.version_by_alias(reference.alias)
    if found is None:
        raise ScoringError(f"no version of {reference.name!r} has the alias {reference.alias!r} yet")
    return found.version
