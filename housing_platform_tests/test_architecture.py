"""The layers keep to their places: read from the source with `ast`, without importing anything.

* Only Dagster's public API is used (`import dagster as dg`), never its private modules.
* Nothing outside the test package imports the tests.
* No module grows past 400 lines.
* `core`, `scoring` and `adapters` import neither Dagster nor FastAPI; `server` does not import Dagster.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = PROJECT_ROOT / "housing_platform"
TESTS = PROJECT_ROOT / "housing_platform_tests"
PYTHON_TREES = ("housing_platform", "housing_platform_tests", "benchmarks", "scripts", "examples")
MAX_MODULE_LINES = 400
DAGSTER = ("dagster",)
WEB = ("fastapi", "starlette")
# Which packages each layer may not import (top-level names; `dagster_aws` & co. count as Dagster).
# Each layer may import the layers listed for it (and itself), nothing above: see docs/architecture.md.
ALLOWED_LAYER_IMPORTS = {
    "config": set(),
    "core": {"config"},
    "scoring": {"config", "core"},
    "adapters": {"config", "core", "scoring"},
    "server": {"config", "core", "scoring", "adapters"},
    "defs": {"config", "core", "scoring", "adapters"},
    "cli": {"config", "core", "scoring", "adapters", "server", "devtools"},
    "devtools": {"config", "core", "scoring", "adapters", "server", "defs"},
}
FORBIDDEN_BY_LAYER = {
    "core": DAGSTER + WEB,
    "scoring": DAGSTER + WEB,
    "adapters": DAGSTER + WEB,
    "server": DAGSTER,
}


def python_files(*trees: str) -> Iterator[Path]:
    for tree in trees:
        root = PROJECT_ROOT / tree
        if root.is_dir():
            yield from sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in ``path``; see :func:`imports_in`."""
    yield from imports_in(path.read_bytes(), path.relative_to(PROJECT_ROOT).parent.parts, str(path))


def imports_in(source: bytes | str, package: tuple[str, ...], filename: str = "<source>") -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in ``source``, at module level or inside functions.

    ``from a.b import c`` yields ``a.b.c`` (it may import the module ``a.b.c``); relative imports
    are resolved against ``package``, the dotted package of the file.
    """
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if base else alias.name


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(PROJECT_ROOT)}:{line}"


def _top_level(name: str) -> str:
    return name.split(".")[0]


def _is_dagster(name: str) -> bool:
    top = _top_level(name)
    return top == "dagster" or top.startswith("dagster_")


def test_no_module_imports_dagsters_private_modules() -> None:
    private = [
        f"{where(path, line)}: {name}"
        for path in python_files(*PYTHON_TREES)
        for line, name in imports(path)
        if _is_dagster(name) and any(part.startswith("_") for part in name.split(".")[1:])
    ]
    assert not private, "Dagster's private modules are imported (use the public `dagster` API):\n" + "\n".join(private)


def test_nothing_outside_the_tests_imports_the_tests() -> None:
    offending = [
        f"{where(path, line)}: {name}"
        for path in python_files(*(tree for tree in PYTHON_TREES if tree != TESTS.name))
        for line, name in imports(path)
        if _top_level(name) == TESTS.name
    ]
    assert not offending, "the package, benchmarks, scripts and examples import the tests:\n" + "\n".join(offending)


def test_no_module_of_the_package_exceeds_400_lines() -> None:
    long = {
        str(path.relative_to(PROJECT_ROOT)): count
        for path in python_files(PACKAGE.name)
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them): {long}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN_BY_LAYER))
def test_the_domain_layers_import_neither_dagster_nor_fastapi(layer: str) -> None:
    forbidden = FORBIDDEN_BY_LAYER[layer]
    assert (PACKAGE / layer).is_dir(), f"no layer {layer}"
    offending = [
        f"{where(path, line)}: {name}"
        for path in python_files(f"{PACKAGE.name}/{layer}")
        for line, name in imports(path)
        if _top_level(name) in forbidden or ("dagster" in forbidden and _is_dagster(name))
    ]
    assert not offending, f"{layer} imports {', '.join(forbidden)}:\n" + "\n".join(offending)


def test_the_import_reader_sees_private_lazy_and_relative_imports() -> None:
    """The checks above are only as good as `imports_in`."""
    source = (
        "import dagster as dg\n"
        "from dagster._core.storage import x\n"
        "def later():\n"
        "    from fastapi import FastAPI\n"
        "from . import test_sensors\n"
        "from dagster import _check\n"
    )
    found = sorted(imports_in(source, ("housing_platform_tests", "defs")))
    assert found == [
        (1, "dagster"),
        (2, "dagster._core.storage.x"),
        (4, "fastapi.FastAPI"),
        (5, "housing_platform_tests.defs.test_sensors"),
        (6, "dagster._check"),
    ]


def _layer_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == PACKAGE.name else None


@pytest.mark.parametrize("layer", sorted(ALLOWED_LAYER_IMPORTS))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    allowed = ALLOWED_LAYER_IMPORTS[layer] | {layer}
    offending = [
        f"{where(path, line)}: {name}"
        for path in python_files(f"{PACKAGE.name}/{layer}")
        for line, name in imports(path)
        if (target := _layer_of(name)) is not None and target not in allowed
    ]
    assert not offending, f"{layer} may import only {sorted(allowed)}:\n" + "\n".join(offending)


def test_every_layer_of_the_package_has_import_rules() -> None:
    layers = {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    assert layers == set(ALLOWED_LAYER_IMPORTS)
