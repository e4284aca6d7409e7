"""The API's OpenAPI description, generated from the same column rules that validate requests.

The instance's JSON Schema (bounds, nullability, categories, cross-column rules), the request bodies
of ``/v1/predict`` and ``/v1/feedback`` with their size limits and example, and the response models.
FastAPI shows them at ``/docs``; nothing here is used to validate (``requests.py`` does that).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from housing_platform.core.request_rules import COLUMN_RULES, CROSS_RULES
from housing_platform.core.schema import EXAMPLE_DISTRICT, FEATURE_COLUMNS, TARGET_COLUMN
from housing_platform.server.requests import MAX_ERRORS_SHOWN, REQUEST_ID_PATTERN, TARGET_RULE


def instance_json_schema() -> dict:
    """JSON Schema of one instance, generated from the column rules (bounds, nullability, categories)."""
    properties: dict[str, dict] = {}
    for name in FEATURE_COLUMNS:
        rule = COLUMN_RULES[name]
        if rule.kind == "category":
            prop: dict[str, Any] = {"type": "string", "enum": list(rule.allowed or ())}
        else:
            prop = {"type": ["number", "null"] if rule.nullable else "number"}
            if rule.minimum is not None:
                prop["minimum" if rule.minimum_inclusive else "exclusiveMinimum"] = rule.minimum
            if rule.maximum is not None:
                prop["maximum" if rule.maximum_inclusive else "exclusiveMaximum"] = rule.maximum
        prop["description"] = rule.description + (" Null: imputed with the training median." if rule.nullable else "")
        properties[name] = prop
    cross = "; ".join(f"{a} {op} {b}" for a, op, b in CROSS_RULES)
    return {
        "type": "object",
        "title": "District",
        "description": f"One district's features. Cross-column rules: {cross}. Other fields are ignored.",
        "required": [name for name in FEATURE_COLUMNS if not COLUMN_RULES[name].nullable],
        "properties": properties,
    }


EXAMPLE_INSTANCE = dict(EXAMPLE_DISTRICT)


def predict_request_openapi(max_rows: int) -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["instances"],
                        "properties": {
                            "instances": {
                                "type": "array", "minItems": 1, "maxItems": max_rows, "items": instance_json_schema()
                            }
                        },
                    },
                    "example": {"instances": [EXAMPLE_INSTANCE]},
                }
            },
        }
    }


def feedback_request_openapi(max_items: int) -> dict:
    item = {
        "type": "object",
        "required": ["request_id", TARGET_COLUMN],
        "properties": {
            "request_id": {"type": "string", "pattern": REQUEST_ID_PATTERN.pattern, "description": "From /v1/predict."},
            TARGET_COLUMN: {
                "type": "number",
                "minimum" if TARGET_RULE.minimum_inclusive else "exclusiveMinimum": TARGET_RULE.minimum,
                "maximum" if TARGET_RULE.maximum_inclusive else "exclusiveMaximum": TARGET_RULE.maximum,
                "description": "The true value, USD, within the schema's range for the target (else 422).",
            },
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [item, {"type": "array", "minItems": 1, "maxItems": max_items, "items": item}]},
                    "example": {"request_id": "0123456789abcdef0123456789abcdef", TARGET_COLUMN: 452600.0},
                }
            },
        }
    }


class PredictResponse(BaseModel):
    predictions: list[float] = Field(description="Median house value, USD, one per instance in order.")
    model_version: str = Field(description="Registered version of housing_price_model that scored them.")
    request_ids: list[str] = Field(description="One id per instance: send it back with /v1/feedback.")
    lower: list[float] | None = Field(
        None, description="Lower end of each prediction's interval (USD; the version's calibrated level, 80% by "
        "default), in order. Absent when the serving version carries no calibrated intervals (or the fallback).",
    )
    upper: list[float] | None = Field(None, description="Upper end of each prediction's interval (USD), in order.")
    fallback: bool = Field(
        False, description="Present and true only when no version could be loaded and the heuristic baseline "
        "(median per ocean_proximity) answered; model_version is then `fallback`.",
    )
    model_versions: list[str] | None = Field(
        None, description="Present only during a canary rollout: the version that answered each instance "
        "(the champion's or the challenger's), in order. Rows are routed by a stable hash of the header "
        "`X-Routing-Key` when sent (all rows of the request together), else of each row's features.",
    )


class FeedbackResponse(BaseModel):
    recorded: int = Field(description="Feedback rows stored.")
    received_at: str = Field(description="ISO 8601, UTC.")


class ErrorItem(BaseModel):
    loc: list[str | int]
    field: str = Field(description="The feature (or 'a, b' for a cross-column rule).")
    rule: str = Field(description="The rule broken, e.g. '> 0', 'finite', 'required', \"one of [...]\".")
    msg: str
    type: str = "value_error"
    row: int | None = Field(None, description="Position of the instance in the request.")
    input: Any = Field(None, description="The value sent.")


class ValidationErrorResponse(BaseModel):
    detail: list[ErrorItem]
    errors_total: int = Field(description=f"Every problem found; at most {MAX_ERRORS_SHOWN} are listed.")


class MessageResponse(BaseModel):
    detail: Any


# The error answers of the routes, described once: a route lists the statuses it can answer with
# :func:`error_responses`; the authentication layer adds 401 / 403 / 429 to the document itself.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body is empty, or not JSON (UTF-8).",
    404: "Not found.",
    409: "Conflict with what is already recorded.",
    413: "Too many rows or items in one request, or a body larger than the server's limit.",
    415: "The Content-Type is not `application/json` (a charset, when sent, must be UTF-8); the body is not read.",
    422: "Invalid input: the row, field and rule of each problem.",
    429: "Too many requests: wait Retry-After seconds.",
    503: "Not ready to answer now: retry later (after Retry-After seconds when the header is sent).",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}}


def error_responses(*statuses: int, descriptions: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` for these error statuses: their body model, a description, Retry-After on 429 / 503.

    ``descriptions`` replaces the generic text of :data:`ERROR_DESCRIPTIONS` with what the route means by it.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "model": ValidationErrorResponse if status == 422 else MessageResponse,
            "description": (descriptions or {}).get(status, ERROR_DESCRIPTIONS[status]),
        }
        if status in (429, 503):
            response["headers"] = _RETRY_AFTER
        responses[status] = response
    return responses
