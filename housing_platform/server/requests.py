"""Request bodies: parsing and validation from the schema (``api_schema.py`` describes them in OpenAPI).

The rules are :func:`housing_platform.core.schema.column_rules` plus the pandera model's cross-column
checks, applied by :func:`housing_platform.core.request_rules.check_rules` — the same code batch scoring uses,
so the API accepts exactly what training would. Validation is vectorised: a request is turned into
columns (one list comprehension per column), types are checked with one ``set(map(type, ...))`` per
column, numbers become one float64 matrix, and every rule is one numpy comparison. No pydantic
model is built per row (at 10,000 rows that alone would cost ~100 ms).

Every problem becomes a :class:`RequestError` with an HTTP status and a JSON body; a 422 lists each
failing ``row``, ``field`` and ``rule`` with a message and the offending ``input`` (at most
:data:`MAX_ERRORS_SHOWN` items; ``errors_total`` counts them all). Fields not in the schema are
ignored, as the training validator ignores extra columns.

JSON has no NaN or Infinity, but many encoders emit them (Python's ``json`` does). Such a body is
parsed by the stdlib parser as a fallback, so the answer is a 422 naming the field and the rule
``finite`` rather than a generic "invalid JSON".
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from housing_platform.core.request_rules import COLUMN_RULES, Violation, check_rules
from housing_platform.core.schema import (
    CATEGORICAL_COLUMN,
    FEATURE_COLUMNS,
    NUMERIC_FEATURE_COLUMNS,
    TARGET_COLUMN,
    column_rules,
)

MAX_ERRORS_SHOWN = 50
REQUEST_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
_NUMBER_TYPES = frozenset((int, float))


class _Missing:
    """Marks a field absent from an instance (distinct from an explicit null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


class RequestError(Exception):
    """A request that cannot be served as sent: ``status`` and ``body`` are the HTTP answer."""

    def __init__(self, status: int, body: dict):
        super().__init__(body.get("detail"))
        self.status = status
        self.body = body

    @classmethod
    def invalid(cls, errors: list[dict], total: int | None = None, rows: int | None = None) -> RequestError:
        """A 422 listing the first :data:`MAX_ERRORS_SHOWN` errors; ``rows``: how many rows failed."""
        total = len(errors) if total is None else total
        error = cls(422, {"detail": errors[:MAX_ERRORS_SHOWN], "errors_total": total})
        error.rows = rows if rows is not None else max(1, len({e.get("row") for e in errors}))
        return error

    rows: int = 0  # rows refused (for the rows-rejected metric)


def error_item(loc: list, field: str, rule: str, message: str, value: Any = MISSING, row: int | None = None) -> dict:
    item: dict[str, Any] = {"loc": loc, "field": field, "rule": rule, "msg": message, "type": "value_error"}
    if row is not None:
        item["row"] = row
    if value is not MISSING:
        item["input"] = _json_safe(value)
    return item


MAX_ECHO_CHARS = 100
_INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson reads and writes as an integer
_SHOWN = reprlib.Repr()  # keyword arguments need Python 3.12
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxlong = 3, 5, 5, 40
_SHOWN.maxstring = _SHOWN.maxother = MAX_ECHO_CHARS


def shown(value: Any) -> str:
    """``value`` for an error message: a repr, escaped (a lone surrogate becomes ``\\ud800``) and truncated."""
    text = _SHOWN.repr(value)
    return text if len(text) <= MAX_ECHO_CHARS + 20 else text[:MAX_ECHO_CHARS] + "..."


def _json_safe(value: Any) -> Any:
    """The ``input`` of an error item: the value itself when JSON carries it small and intact, else :func:`shown`.

    A 500 must never come from echoing what the client sent: a lone surrogate, an integer beyond 64 bits
    or a structure nested 300 levels deep cannot be encoded by orjson, and a 10 MB string must not be
    sent back (twice) in a 422.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # "nan", "inf": JSON cannot carry them
    if isinstance(value, int):
        return value if _INT_RANGE[0] <= value <= _INT_RANGE[1] else shown(value)
    if isinstance(value, str) and len(value) <= MAX_ECHO_CHARS:
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:  # a lone surrogate
            return shown(value)
    if isinstance(value, dict | list) and len(value) <= 10:
        try:
            if len(orjson.dumps(value)) <= 2 * MAX_ECHO_CHARS:
                return value
        except orjson.JSONEncodeError:  # too deep, a surrogate or a huge integer inside
            pass
    return shown(value)


def _parse_int(literal: str) -> int | float:
    """An integer literal as orjson reads it: beyond 64 bits it is a float (inf beyond float64, refused later).

    Python's own ``int()`` would build arbitrary-precision integers (and fail beyond 4,300 digits).
    """
    if len(literal) <= 20:
        number = int(literal)
        if _INT_RANGE[0] <= number <= _INT_RANGE[1]:
            return number
    return float(literal)


def parse_json(body: bytes) -> Any:
    """The body as Python objects; NaN / Infinity literals are parsed (then refused by validation)."""
    if not body:
        raise RequestError(400, {"detail": "the request body is empty; send JSON"})
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        try:  # the stdlib parser accepts NaN, Infinity and 1e400; validation then names the field
            return json.loads(body.decode("utf-8"), parse_int=_parse_int)  # JSON over HTTP is UTF-8 (RFC 8259)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise RequestError(400, {"detail": f"the request body is not valid JSON: {error}"}) from None


# ---------------------------------------------------------------------------------------------
# /v1/predict
# ---------------------------------------------------------------------------------------------


@dataclass
class Instances:
    """A validated request as columns: ``numeric`` (n, 8) float64 with NaN for a null, categories as str."""

    numeric: np.ndarray
    categories: list[str]

    def __len__(self) -> int:
        return len(self.categories)


def parse_instances(payload: Any, max_rows: int) -> Instances:
    """Validate ``{"instances": [{...}, ...]}``; RequestError 413 / 422 on failure."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise RequestError.invalid(
            [error_item(["body", "instances"], "instances", "required",
                        'the body must be an object {"instances": [{<feature columns>}, ...]}')]
        )
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise RequestError.invalid(
            [error_item(["body", "instances"], "instances", "list", "instances must be a list of objects",
                        type(instances).__name__)]
        )
    n = len(instances)
    if n == 0:
        raise RequestError.invalid(
            [error_item(["body", "instances"], "instances", "min 1 row", "instances must hold at least one row")]
        )
    if n > max_rows:
        raise RequestError(
            413, {"detail": f"too many rows: {n:,} instances in one request, at most {max_rows:,}; split the request"}
        )
    if not all(type(row) is dict for row in instances):
        bad = [i for i, row in enumerate(instances) if type(row) is not dict]
        errors = [
            error_item(["body", "instances", i], "instances", "object", f"instance {i} must be an object",
                       type(instances[i]).__name__, row=i)
            for i in bad[:MAX_ERRORS_SHOWN]
        ]
        raise RequestError.invalid(errors, len(bad), rows=len(bad))

    errors: list[dict] = []
    reported: dict[str, set[int]] = {}  # field -> rows already reported (no second error for them)
    width = len(NUMERIC_FEATURE_COLUMNS)
    values = [row.get(name, MISSING) for row in instances for name in NUMERIC_FEATURE_COLUMNS]
    numeric = None
    if set(map(type, values)) <= _NUMBER_TYPES:  # the common case: one conversion for the whole request
        try:
            numeric = np.array(values, dtype=np.float64).reshape(n, width)
        except OverflowError:  # an integer beyond float64 (10**400): the per-column path names it
            numeric = None
        if numeric is not None and not np.isfinite(numeric).all():
            numeric = None
    if numeric is None:
        numeric = np.empty((n, width), dtype=np.float64)
        for j, name in enumerate(NUMERIC_FEATURE_COLUMNS):
            numeric[:, j] = _number_column(name, values[j::width], errors, reported)
    categories = [row.get(CATEGORICAL_COLUMN, MISSING) for row in instances]
    _category_types(categories, errors, reported)
    if errors or not _all_strings(categories):
        categories = [c if type(c) is str else None for c in categories]

    violations = check_rules(numeric, categories)
    for violation in violations:
        _add_violation(violation, instances, errors, reported)
    if errors:
        errors.sort(key=lambda e: (e.get("row", -1), _field_order(e["field"])))
        raise RequestError.invalid(errors, len(errors))
    return Instances(numeric=numeric, categories=categories)


def _all_strings(values: list) -> bool:
    return set(map(type, values)) <= {str}


def _field_order(field: str) -> int:
    first = field.split(",")[0].strip()
    return FEATURE_COLUMNS.index(first) if first in FEATURE_COLUMNS else len(FEATURE_COLUMNS)


def _number_column(name: str, values: list, errors: list[dict], reported: dict[str, set[int]]) -> np.ndarray:
    types = set(map(type, values))
    if types <= _NUMBER_TYPES:
        try:
            column = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float64 (10**400)
            column = np.array([float(v) if abs(v) < 1e308 else math.inf for v in values], dtype=np.float64)
        if not np.isfinite(column).all():  # NaN / Infinity literals or 1e400 (stdlib fallback parser)
            bad = np.flatnonzero(~np.isfinite(column)).tolist()
            for i in bad:
                _error(errors, reported, i, name, "finite", f"{name} must be a finite number", values[i])
            column[bad] = np.nan
        return column
    nullable = COLUMN_RULES[name].nullable
    column = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        kind = type(value)
        if kind in _NUMBER_TYPES:
            number = float(value) if abs(value) < 1e308 else math.inf
            if math.isfinite(number):
                column[i] = number
            else:
                _error(errors, reported, i, name, "finite", f"{name} must be a finite number", value)
        elif value is None:
            if not nullable:
                _error(errors, reported, i, name, "not null", f"{name} is required (got null)", None)
        elif value is MISSING:
            if not nullable:  # a nullable field may be left out: it is null
                _error(errors, reported, i, name, "required", f"field {name} is missing")
        else:
            _error(errors, reported, i, name, "number", f"{name} must be a number", value)
    return column


def _category_types(values: list, errors: list[dict], reported: dict[str, set[int]]) -> None:
    if _all_strings(values):
        return
    for i, value in enumerate(values):
        if type(value) is str:
            continue
        if value is MISSING:
            _error(errors, reported, i, CATEGORICAL_COLUMN, "required", f"field {CATEGORICAL_COLUMN} is missing")
        elif value is None:
            _error(errors, reported, i, CATEGORICAL_COLUMN, "not null", f"{CATEGORICAL_COLUMN} is required (got null)", None)
        else:
            _error(errors, reported, i, CATEGORICAL_COLUMN, "string", f"{CATEGORICAL_COLUMN} must be a string", value)


def _error(errors, reported, row: int, field: str, rule: str, message: str, value: Any = MISSING) -> None:
    reported.setdefault(field, set()).add(row)
    errors.append(error_item(["body", "instances", row, field], field, rule, message, value, row=row))


def _add_violation(violation: Violation, instances: list[dict], errors: list[dict], reported) -> None:
    cross = "," in violation.field
    already = set() if cross else reported.get(violation.field, set())
    for i in violation.rows.tolist():
        if i in already:
            continue
        if cross:
            names = [part.strip() for part in violation.field.split(",")]
            value = {name: instances[i].get(name) for name in names}
            loc = ["body", "instances", i]
            message = f"{violation.message} (got {', '.join(f'{k}={shown(v)}' for k, v in value.items())})"
        else:
            value = instances[i].get(violation.field)
            loc = ["body", "instances", i, violation.field]
            message = f"{violation.message}, got {shown(value)}"
        errors.append(error_item(loc, violation.field, violation.rule, message, value, row=i))


# ---------------------------------------------------------------------------------------------
# /v1/feedback
# ---------------------------------------------------------------------------------------------


# The target's rules in the pandera model (its bounds), so a label is held to the raw data's rule.
TARGET_RULE = column_rules(include_target=True)[TARGET_COLUMN]


def target_problem(value: Any) -> tuple[str, str] | None:
    """(rule, message) of the first rule of the target that ``value`` breaks, or None if it passes them all."""
    if type(value) not in _NUMBER_TYPES:
        return "number", f"{TARGET_COLUMN} must be a number of dollars"
    number = float(value) if abs(value) < 1e308 else math.inf  # an integer beyond float64 is not finite either
    if not math.isfinite(number):
        return "finite", f"{TARGET_COLUMN} must be a finite number"
    rule = TARGET_RULE
    if rule.minimum is not None and (number < rule.minimum or (number == rule.minimum and not rule.minimum_inclusive)):
        return _target_bound(">=" if rule.minimum_inclusive else ">", rule.minimum)
    if rule.maximum is not None and (number > rule.maximum or (number == rule.maximum and not rule.maximum_inclusive)):
        return _target_bound("<=" if rule.maximum_inclusive else "<", rule.maximum)
    return None


def _target_bound(op: str, limit: float) -> tuple[str, str]:
    return f"{op} {limit:g}", (
        f"{TARGET_COLUMN} must be {op} {limit:g} dollars: the schema's range for the target "
        f"({TARGET_RULE.describe_range()}), the rule the training data passes too"
    )


def parse_feedback(payload: Any, max_items: int) -> list[tuple[str, float]]:
    """``{"request_id", "median_house_value"}`` or a list of them → [(id, value)]; 413 / 422 on failure."""
    single = isinstance(payload, dict)
    items = [payload] if single else payload
    if not isinstance(items, list) or not items:
        raise RequestError.invalid(
            [error_item(["body"], "body", "object or list",
                        f'send {{"request_id": "...", "{TARGET_COLUMN}": 123456.0}} or a non-empty list of them')]
        )
    if len(items) > max_items:
        raise RequestError(413, {"detail": f"too many feedback items: {len(items):,}, at most {max_items:,} per request"})
    errors: list[dict] = []
    parsed: list[tuple[str, float]] = []
    for i, item in enumerate(items):
        loc = ["body"] if single else ["body", i]
        row = None if single else i
        if not isinstance(item, dict):
            errors.append(
                error_item(loc, "body", "object", "each feedback item must be an object", type(item).__name__, row)
            )
            continue
        request_id = item.get("request_id", MISSING)
        value = item.get(TARGET_COLUMN, MISSING)
        ok = True
        if request_id is MISSING:
            errors.append(error_item([*loc, "request_id"], "request_id", "required", "field request_id is missing", row=row))
            ok = False
        elif not isinstance(request_id, str) or not REQUEST_ID_PATTERN.match(request_id):
            errors.append(error_item(
                [*loc, "request_id"], "request_id", "32 lowercase hex characters",
                "request_id must be a request id returned by /v1/predict (32 lowercase hex characters)", request_id, row,
            ))
            ok = False
        if value is MISSING:
            errors.append(
                error_item([*loc, TARGET_COLUMN], TARGET_COLUMN, "required", f"field {TARGET_COLUMN} is missing", row=row)
            )
            ok = False
        elif (problem := target_problem(value)) is not None:
            errors.append(error_item([*loc, TARGET_COLUMN], TARGET_COLUMN, *problem, value, row))
            ok = False
        if ok:
            parsed.append((request_id, float(value)))
    if errors:
        raise RequestError.invalid(errors)
    return parsed


# ---------------------------------------------------------------------------------------------
# OpenAPI: request bodies from the column rules, responses as pydantic models
# ---------------------------------------------------------------------------------------------
