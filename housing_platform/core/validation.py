"""Apply the district schema to a table: split it into valid rows and a quarantine.

Two kinds of failure, treated differently:

* **Structural** (file unreadable or empty, a required column missing, a column whose values cannot
  be parsed as its type): nothing can be trusted, so :class:`StructuralValidationError` is raised with
  a message that names every column and rule involved.
* **Row-level** (a value out of range, an unknown category, a null where none is allowed, a
  cross-column rule): the offending rows go to the quarantine, each with the rules it broke, and the
  remaining rows flow on. Validation is lazy, so every failure is collected, not just the first.

Used by the `validated_housing_data` asset and by ``housing-platform validate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
from pydantic import BaseModel, ConfigDict, Field

from housing_platform.core.schema import ALL_COLUMNS, NULL_ALLOWANCE, HousingDistricts

SOURCE_ROW_COLUMN = "source_row"  # 1-based line number in the CSV (header is line 1)
FAILED_RULES_COLUMN = "failed_rules"
MAX_EXAMPLES = 5


class UnreadableDataError(Exception):
    """The file cannot be read as a CSV at all (missing, a directory, binary, empty)."""


class StructuralValidationError(Exception):
    """The table's structure is wrong; ``failures`` has one row per (column, rule)."""

    def __init__(self, failures: pd.DataFrame):
        self.failures = failures
        lines = [
            f"column '{row.column}' fails rule '{row.rule}'"
            + (f" ({row.failing_count} values, e.g. {row.examples})" if row.failing_count else "")
            for row in failures.itertuples()
        ]
        super().__init__("The data does not have the required structure:\n  " + "\n  ".join(lines))


@dataclass
class ValidationOutcome:
    """Valid rows, quarantined rows (with the rules each broke) and a per-rule summary."""

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    summary: pd.DataFrame = field(repr=False)
    input_rows: int = 0
    input_null_share: dict[str, float] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)

    @property
    def quarantine_share(self) -> float:
        return len(self.quarantine) / self.input_rows if self.input_rows else 0.0


SUMMARY_COLUMNS = ["rule", "column", "failing_count", "examples"]


def read_housing_csv(path: str | Path) -> pd.DataFrame:
    """Read a district CSV, turning every way it can be unreadable into :class:`UnreadableDataError`."""
    path = Path(path)
    if not path.exists():
        raise UnreadableDataError(f"{path}: no such file")
    if not path.is_file():
        raise UnreadableDataError(f"{path}: not a regular file")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise UnreadableDataError(f"{path}: the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        raise UnreadableDataError(f"{path}: not a readable CSV file ({error.__class__.__name__}: {error})") from None
    if frame.empty:
        raise UnreadableDataError(f"{path}: the file has a header but no rows")
    return frame


def _examples(values: pd.Series) -> str:
    distinct = list(dict.fromkeys(values.tolist()))[:MAX_EXAMPLES]
    return ", ".join(repr(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v) for v in distinct)


_READABLE_CHECKS = {
    "greater_than": ">",
    "greater_than_or_equal_to": ">=",
    "less_than": "<",
    "less_than_or_equal_to": "<=",
    "in_range": "in range",
}


def _readable_rule(check: str) -> str:
    """`less_than_or_equal_to(52.0)` → `<= 52`; `isin([...])` → `one of [...]`; others unchanged."""
    name, _, argument = check.partition("(")
    argument = argument.rstrip(")")
    if name in _READABLE_CHECKS:
        try:
            return f"{_READABLE_CHECKS[name]} {float(argument):g}"
        except ValueError:
            return f"{_READABLE_CHECKS[name]} {argument}"
    if name == "isin":
        return "one of " + argument.strip("[]").replace("'", "")
    return check


def _summarise(failure_cases: pd.DataFrame) -> pd.DataFrame:
    """One row per (rule, column): how many rows fail it and up to five example values.

    For table-level rules (cross-column checks) the examples are CSV line numbers, since no single
    value is at fault.
    """
    if failure_cases.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    rows = []
    cases = failure_cases.drop_duplicates(subset=["rule", "column", "index"])
    for (rule, column), group in cases.groupby(["rule", "column"], sort=False, dropna=False):
        indexed = group["index"].dropna()
        if column == "(row)" or rule == "not null":
            examples = ", ".join(f"line {int(i) + 2}" for i in indexed.head(MAX_EXAMPLES))
        else:
            examples = _examples(group["failure_case"].dropna())
        rows.append({"rule": rule, "column": column, "failing_count": int(indexed.nunique()), "examples": examples})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).sort_values("failing_count", ascending=False, kind="stable")


def _label_failures(failure_cases: pd.DataFrame) -> pd.DataFrame:
    """Normalise pandera's failure cases to (rule, column, failure_case, index, structural)."""
    cases = failure_cases.copy()
    dataframe_level = cases["schema_context"] == "DataFrameSchema"
    cases["column"] = cases["column"].where(~dataframe_level, "(row)")
    cases["rule"] = cases["check"].astype(str).map(_readable_rule)
    cases.loc[cases["rule"] == "column_in_dataframe", "rule"] = "required column"
    cases.loc[cases["rule"] == "not_nullable", "rule"] = "not null"
    missing = cases["rule"] == "required column"
    # A missing column is reported by pandera with the column name in `failure_case`.
    cases.loc[missing, "column"] = cases.loc[missing, "failure_case"]
    cases.loc[missing, "failure_case"] = None
    unparseable = cases["rule"].str.startswith(("coerce_dtype", "dtype("))
    cases.loc[unparseable, "rule"] = "type " + cases.loc[unparseable, "rule"].str.extract(r"\('?(\w+)'?\)")[0]
    # A check that crashed or failed on the whole table (no row index) is structural too.
    cases["structural"] = missing | unparseable | cases["index"].isna()
    return cases[["rule", "column", "failure_case", "index", "structural"]]


def validate_housing_frame(frame: pd.DataFrame) -> ValidationOutcome:
    """Validate ``frame`` against :class:`HousingDistricts` (lazily) and split off bad rows."""
    frame = frame.reset_index(drop=True)
    extra_columns = [c for c in frame.columns if c not in ALL_COLUMNS]
    present = [c for c in ALL_COLUMNS if c in frame.columns]
    input_null_share = {c: float(frame[c].isna().mean()) for c in present}
    source_rows = pd.Series(frame.index + 2, name=SOURCE_ROW_COLUMN)  # header is line 1

    try:
        validated = HousingDistricts.validate(frame[present], lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = _label_failures(errors.failure_cases)
    else:
        cases = pd.DataFrame(columns=["rule", "column", "failure_case", "index", "structural"])

    structural = cases[cases["structural"].astype(bool)]
    if not structural.empty:
        # Consequential crashes of table-level checks (e.g. comparing strings) add noise to the
        # report once a real structural cause is known, so keep only the causes.
        causes = structural[structural["rule"].str.startswith(("required column", "type "))]
        raise StructuralValidationError(_summarise(causes if not causes.empty else structural))

    summary = _summarise(cases)
    bad_index = cases["index"].astype(int).unique() if not cases.empty else []
    if len(bad_index):
        typed = HousingDistricts.to_schema().coerce_dtype(frame[present])
        rules_per_row = (
            cases.assign(label=lambda c: c["column"].where(c["column"] == "(row)", c["column"] + ": ") + c["rule"])
            .assign(label=lambda c: c["label"].str.replace("(row)", "", regex=False))
            .groupby(cases["index"].astype(int))["label"]
            .agg(lambda labels: "; ".join(dict.fromkeys(labels)))
        )
        quarantine = typed.loc[bad_index].copy()
        quarantine.insert(0, SOURCE_ROW_COLUMN, source_rows.loc[bad_index].to_numpy())
        quarantine[FAILED_RULES_COLUMN] = rules_per_row.loc[bad_index].to_numpy()
        validated = HousingDistricts.validate(frame[present].drop(index=bad_index), lazy=True)
    else:
        quarantine = pd.DataFrame(columns=[SOURCE_ROW_COLUMN, *present, FAILED_RULES_COLUMN])

    return ValidationOutcome(
        valid=validated.reset_index(drop=True)[list(ALL_COLUMNS)],
        quarantine=quarantine.reset_index(drop=True),
        summary=summary.reset_index(drop=True),
        input_rows=len(frame),
        input_null_share=input_null_share,
        extra_columns=extra_columns,
    )


# The rules of the data gate, by name (the names of the blocking checks on `validated_housing_data`).
QUARANTINE_SHARE_CHECK = "quarantine_share_within_limit"
DUPLICATE_SHARE_CHECK = "duplicate_share_within_limit"
NULL_SHARE_CHECK = "null_share_within_allowance"
ENOUGH_ROWS_CHECK = "enough_rows"
DATA_GATE_CHECKS = (QUARANTINE_SHARE_CHECK, DUPLICATE_SHARE_CHECK, NULL_SHARE_CHECK, ENOUGH_ROWS_CHECK)


class DataGateLimits(BaseModel):
    """Limits of the data gate: the one home of their defaults (asset run config and CLI options use them)."""

    model_config = ConfigDict(extra="forbid")

    max_quarantine_share: float = Field(0.01, description="Largest share of input rows that may be quarantined.")
    max_duplicate_share: float = Field(0.01, description="Largest share of valid rows that may be exact duplicates.")
    min_rows: int = Field(1_000, description="Fewest valid rows a model may be trained on.")


@dataclass(frozen=True)
class DataGateResult:
    """One data-gate rule evaluated on a validation outcome."""

    name: str
    passed: bool
    description: str
    value: float
    limit: float


def evaluate_data_gate(
    outcome: ValidationOutcome, limits: DataGateLimits | None = None, **overrides: float
) -> list[DataGateResult]:
    """The data gate: the rules the blocking asset checks and the CLI both apply.

    ``limits`` defaults to :class:`DataGateLimits`; keyword ``overrides`` replace single limits by name
    (``evaluate_data_gate(outcome, min_rows=100)``).
    """
    limits = DataGateLimits(**{**(limits or DataGateLimits()).model_dump(), **overrides})
    max_quarantine_share, max_duplicate_share = limits.max_quarantine_share, limits.max_duplicate_share
    min_rows = limits.min_rows
    duplicate_share = float(outcome.valid.duplicated().mean()) if len(outcome.valid) else 0.0
    null_excess = {
        column: share - NULL_ALLOWANCE.get(column, 0.0)
        for column, share in outcome.input_null_share.items()
        if share > NULL_ALLOWANCE.get(column, 0.0)
    }
    worst_null = max(null_excess, key=null_excess.get) if null_excess else None
    return [
        DataGateResult(
            QUARANTINE_SHARE_CHECK,
            outcome.quarantine_share <= max_quarantine_share,
            f"{outcome.quarantine_share:.2%} of input rows quarantined (limit {max_quarantine_share:.2%})",
            outcome.quarantine_share,
            max_quarantine_share,
        ),
        DataGateResult(
            DUPLICATE_SHARE_CHECK,
            duplicate_share <= max_duplicate_share,
            f"{duplicate_share:.2%} of valid rows are exact duplicates (limit {max_duplicate_share:.2%})",
            duplicate_share,
            max_duplicate_share,
        ),
        DataGateResult(
            NULL_SHARE_CHECK,
            not null_excess,
            "every column's null share is within its allowance"
            if not null_excess
            else "null share over allowance: "
            + ", ".join(
                f"{c} {outcome.input_null_share[c]:.2%} (allowed {NULL_ALLOWANCE.get(c, 0.0):.2%})" for c in null_excess
            ),
            outcome.input_null_share.get(worst_null, 0.0) if worst_null else 0.0,
            NULL_ALLOWANCE.get(worst_null, 0.0) if worst_null else 0.0,
        ),
        DataGateResult(
            ENOUGH_ROWS_CHECK,
            len(outcome.valid) >= min_rows,
            f"{len(outcome.valid):,} valid rows (minimum {min_rows:,})",
            float(len(outcome.valid)),
            float(min_rows),
        ),
    ]
