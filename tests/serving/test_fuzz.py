"""API fuzzing with Schemathesis against the live service's one OpenAPI document (``/openapi.json``):
every route, schema-valid and schema-invalid requests, checked for no 5xx, documented status codes,
content types and response-schema conformance.

Examples per operation and mode: ``MEDLENS_FUZZ_EXAMPLES`` (default 8) in ``make test``; the ``thorough``
variant, marked ``slow`` (``make test-slow``), runs ``MEDLENS_FUZZ_SLOW_EXAMPLES`` (default 50).
Excluded checks, and why: ``positive_data_acceptance`` (a schema-valid multipart ``file`` is random bytes,
which the models rightly refuse with 415/422) and ``ignored_auth`` (the test server runs without a token,
as documented: auth is on only when MEDLENS_API_TOKEN is set; tests/serving/test_http.py covers it)."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import ignored_auth, positive_data_acceptance
from schemathesis.generation import GenerationMode

pytestmark = [pytest.mark.serve, pytest.mark.timeout(900)]

EXAMPLES = int(os.environ.get("MEDLENS_FUZZ_EXAMPLES", "8"))
SLOW_EXAMPLES = int(os.environ.get("MEDLENS_FUZZ_SLOW_EXAMPLES", "50"))


@pytest.fixture(scope="module")
def api_schema(serving_url: str) -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_url(f"{serving_url}/openapi.json")
    # The bearer token is optional by design (off unless MEDLENS_API_TOKEN is set): a request without one is
    # not a schema violation here. tests/serving/test_http.py covers auth when it is on.
    loaded.config.generation.update(with_security_parameters=False)
    return loaded


@pytest.mark.parametrize(
    "examples",
    [pytest.param(EXAMPLES, id="bounded"), pytest.param(SLOW_EXAMPLES, id="thorough", marks=pytest.mark.slow)],
)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_route_answers_as_documented(
    api_schema: schemathesis.BaseSchema, mode: GenerationMode, examples: int
) -> None:
    """Each operation of the document in turn (schemathesis's pytest plugin does not load under this pytest):
    schema-valid requests (``positive``) and schema-violating ones (``negative``, which must be 4xx)."""
    failures: list[str] = []
    unsatisfiable: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
            database=None,
        )  # fmt: skip
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(timeout=120, excluded_checks=[positive_data_acceptance, ignored_auth])

        try:
            run()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                failures.append(f"{operation.label}: no valid request could be generated")
            # negative: the operation has nothing a request could violate (no parameters, or only a free path
            # string); counted, so that a document that loses every parameter cannot pass unnoticed
            unsatisfiable.append(operation.label)
        except Exception as exc:  # collect every route's failure, then fail once with all of them
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    assert len(unsatisfiable) <= len(operations) // 2, unsatisfiable
