"""Small helpers shared by tests of different layers (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel


@contextmanager
def changed_default(model: type[BaseModel], name: str, value) -> Iterator[None]:
    """Edit a field's default in its one home, as a developer would in the source."""
    field = model.model_fields[name]
    original = field.default
    field.default = value
    model.model_rebuild(force=True)
    try:
        yield
    finally:
        field.default = original
        model.model_rebuild(force=True)
