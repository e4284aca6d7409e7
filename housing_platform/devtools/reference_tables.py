"""The README's configuration tables, generated from the one place each default lives.

Every environment variable of the embedded profile is a field of
:class:`~housing_platform.config.settings.HousingSettings`; every gate limit and threshold is a field
of a pydantic model in ``core`` (or the server's config). The README shows them in tables between
``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->`` markers, rendered here from the
fields' defaults and descriptions. ``python -m housing_platform.devtools.reference_tables --write``
rewrites them; a test fails when the README and the code disagree, so neither can drift alone.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

from pydantic import BaseModel

from housing_platform.config.profiles import EMBEDDED, PROFILE_ENV
from housing_platform.config.settings import DEFAULT_DATA_PATH, PROJECT_ROOT, HousingSettings

README = PROJECT_ROOT / "README.md"
_PLACEHOLDER_HOME = Path("/HOUSING_HOME")  # rendered as $HOUSING_HOME in the derived defaults

# (table name, "module:Class" of the pydantic model holding the defaults, fields to leave out)
DEFAULTS_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "data-gate": ("housing_platform.core.validation:DataGateLimits", ()),
    "model-gate": ("housing_platform.core.model_gate:GateThresholds", ()),
    "drift": ("housing_platform.core.drift:DriftConfig", ("per_column_method", "per_column_threshold")),
    "live-quality": ("housing_platform.core.live_quality:QualityLimits", ()),
    "intervals": ("housing_platform.core.conformal:IntervalConfig", ()),
    "labels": ("housing_platform.core.label_consistency:LabelGateLimits", ()),
    "retraining": ("housing_platform.config.settings:RetrainingPolicy", ()),
    "rollout": ("housing_platform.core.rollout:RolloutConfig", ()),
    "serving": ("housing_platform.server.server_config:ServingConfig", ("tracking_uri", "artifact_root", "capture_url")),
}


def _env_name(name: str) -> str:
    alias = HousingSettings.model_fields[name].validation_alias
    choices = getattr(alias, "choices", None)
    if choices:
        return str(choices[0])
    return f"{HousingSettings.model_config.get('env_prefix', '')}{name}".upper()


def _shown(value: object) -> str:
    if isinstance(value, Path):
        if value == HousingSettings.model_fields["home"].default:
            return "`.housing/` in the repository"
        if value.is_relative_to(PROJECT_ROOT):
            return f"`{value.relative_to(PROJECT_ROOT)}`"
    return f"`{str(value).replace(str(_PLACEHOLDER_HOME), '$HOUSING_HOME')}`"


def environment_table() -> str:
    """The embedded profile's variables: each HousingSettings field, its default and meaning."""
    fields = HousingSettings.model_fields
    # Every field given explicitly (so the user's environment cannot leak into the README); URLs left
    # empty are derived from the placeholder home exactly as at run time.
    explicit = {name: ("" if field.default == "" else field.default) for name, field in fields.items()}
    derived = HousingSettings(**{**explicit, "home": _PLACEHOLDER_HOME, "data_path": DEFAULT_DATA_PATH})
    rows = [
        (_env_name(name), _shown(field.default if name == "home" else getattr(derived, name)), field.description)
        for name, field in fields.items()
    ]
    rows.insert(2, ("DAGSTER_HOME", "`$HOUSING_HOME/dagster` (set by the Makefile)",
                    "the Dagster instance; `housing-platform init` writes its `dagster.yaml` (SQLite, telemetry off)"))
    rows.append((PROFILE_ENV, f"`{EMBEDDED}`", "`production`: see below"))
    rows.append(("PYTHON", "`python3.11`", "interpreter the Makefile builds `.venv` with"))
    return _markdown(("variable", "default", "meaning"), [(f"`{name}`", default, text) for name, default, text in rows])


def defaults_table(model: type[BaseModel], leave_out: tuple[str, ...] = ()) -> str:
    """One row per field of ``model``: its name, default and description."""
    rows = []
    for name, field in model.model_fields.items():
        if name in leave_out or field.is_required():
            continue
        default = field.get_default(call_default_factory=True)
        shown = f"`{default}`"
        if isinstance(default, float):
            shown = f"`{default:,g}`"
        elif isinstance(default, int) and not isinstance(default, bool):
            shown = f"`{default:,}`"
        if isinstance(default, tuple):
            shown = ", ".join(f"`{item}`" for item in default) or "none"
        rows.append((f"`{name}`", shown, field.description or ""))
    return _markdown(("setting", "default", "meaning"), rows)


def _model(reference: str) -> type[BaseModel]:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def generated_tables() -> dict[str, str]:
    tables = {"environment": environment_table()}
    for name, (reference, leave_out) in DEFAULTS_TABLES.items():
        tables[name] = defaults_table(_model(reference), leave_out)
    return tables


def _markdown(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- generated: {re.escape(name)} [^>]*-->\n)(.*?)(<!-- end generated: {re.escape(name)} -->)", re.S)


def render(text: str, tables: dict[str, str] | None = None) -> str:
    """``text`` with every generated block replaced by its current table; a missing block is an error."""
    for name, table in (tables or generated_tables()).items():
        pattern = _block(name)
        if not pattern.search(text):
            raise ValueError(f"no '<!-- generated: {name} ... -->' block in the README")
        text = pattern.sub(lambda match: f"{match.group(1)}{table}\n{match.group(3)}", text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the README's configuration tables from the code.")
    parser.add_argument("--write", action="store_true", help="rewrite README.md (default: print whether it is current)")
    args = parser.parse_args(argv)
    current = README.read_text(encoding="utf-8")
    wanted = render(current)
    if args.write:
        README.write_text(wanted, encoding="utf-8")
        print(f"{README}: {'updated' if wanted != current else 'already current'}")
        return 0
    print(f"{README}: {'current' if wanted == current else 'out of date: run with --write'}")
    return 0 if wanted == current else 1


if __name__ == "__main__":
    sys.exit(main())
