"""Property-based API testing with schemathesis against the real server on loopback (uvicorn + httptools,
the options `housing-platform serve` uses): every operation of the OpenAPI document, with schema-valid
and schema-violating inputs, a fixed seed (``derandomize``) and a bounded number of examples. Asserted:
no 5xx, every status is one the document declares for the operation, each response's Content-Type and
body match what it declares. Plus the document itself lists the error statuses a client can meet.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow

# 5 operations x 30 schema-valid examples + 2 POST operations x 30 schema-violating ones: about 40 s on
# 2 loaded cores; derandomize makes the run the same on every machine (a fixed seed).
MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


@pytest.fixture(scope="module")
def api_schema(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    # A schema-violating request must be refused with a 4xx; schemathesis's default list lacks 413, which is
    # how this API refuses a list longer than the documented `maxItems` (too many rows or feedback items).
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    return schema


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda mode: mode.value)
def test_every_operation_answers_as_documented_and_never_5xx(api_schema, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {operation.label for operation in operations} >= {"POST /v1/predict", "POST /v1/feedback"}
    if mode is GenerationMode.NEGATIVE:  # the GET routes take no input that could violate the schema
        operations = [operation for operation in operations if operation.method.upper() == "POST"]
    for operation in operations:

        # No shrinking phase: a failure is reported with the first failing case, so the run stays bounded.
        # The document declares bearer tokens (needed once the server holds one; this one holds none): a fixed
        # header keeps schemathesis from counting its absence as the schema violation a request was sent with.
        @given(case=operation.as_strategy(generation_mode=mode, headers={"Authorization": "Bearer unused"}))
        @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                  phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))
        def answers_as_documented(case):
            case.call_and_validate(checks=CHECKS, timeout=30)

        answers_as_documented()


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("/v1/predict", {"200", "400", "413", "415", "422", "503"}),
        ("/v1/feedback", {"200", "400", "404", "409", "413", "415", "422", "503"}),
    ],
)
def test_the_document_lists_the_error_statuses_of_each_post_route(server, path, statuses):
    document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    responses = document["paths"][path]["post"]["responses"]

    assert statuses <= set(responses), statuses - set(responses)
    assert "empty" in responses["400"]["description"]
    assert "application/json" in responses["415"]["description"]
