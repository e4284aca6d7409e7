"""Run-config fields whose defaults live in a domain model, so each default has one home.

The launchpad shows a `dg.Config`'s defaults and descriptions; the domain (`core`) holds the values the
platform is tuned or gated with. :func:`field_from` ties the two: the run-config field reads its default
from the domain model each time Dagster builds the config schema, and takes the field's description.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


def field_from(model: type[BaseModel], name: str, description: str | None = None) -> Any:
    """A `dg.Config` field defaulting to ``model``'s default for ``name`` (tuples become lists)."""

    def default() -> Any:
        value = getattr(model(), name)
        return list(value) if isinstance(value, tuple) else value

    return Field(default_factory=default, description=description or model.model_fields[name].description)
