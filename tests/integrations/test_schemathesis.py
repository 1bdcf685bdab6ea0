"""Schemathesis over the whole schema: no 5xx, and every response matches the schema.

Bounded (a few examples per operation, valid and invalid data) so the suite stays fast;
run with a valid key, and with a missing or revoked key. Schemathesis' own pytest
plugin does not work with pytest 9 yet, so its strategies are driven by Hypothesis here.
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from integrations.services import partner_key_create, partner_key_revoke

pytestmark = pytest.mark.django_db

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.fixture
def api_schema(settings):
    settings.API_RATE_LIMIT = "100000/min"
    # As Django's test client does: the app must not close the test's connection (and
    # with it the test's transaction) at the end of each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/schema/", application)
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def operations(schema: schemathesis.BaseSchema) -> list:
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 14, "the schema lost operations"
    return found


def run(schema: schemathesis.BaseSchema, examples: int, send) -> None:
    for operation in operations(schema):
        for mode in MODES:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                send(case)

            check()


def test_the_api_conforms_with_a_valid_key(api_schema, journey_with_leg, api_key):
    def send(case: schemathesis.Case) -> None:
        params = case.path_parameters or {}
        # Mostly aim at the partner's own journey and leg, so bodies get validated.
        if "reference" in params and not params["reference"].startswith("MP-X"):
            params["reference"] = journey_with_leg.reference
        if "sequence" in params:
            params["sequence"] = 1
        # Negative cases may carry a generated Authorization header; ours wins.
        case.headers = {**(case.headers or {}), "Authorization": f"Api-Key {api_key}"}
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        assert response.status_code != 401

    run(api_schema, 5, send)


def test_the_api_refuses_without_a_usable_key(api_schema, journey_with_leg, partner):
    key, plain = partner_key_create(partner=partner)
    partner_key_revoke(key=key)

    def send(case: schemathesis.Case) -> None:
        base = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        for headers in (base, {**base, "Authorization": f"Api-Key {plain}"}):
            case.headers = headers
            response = case.call()
            case.validate_response(response, checks=CHECKS)
            assert response.status_code == 401
            assert set(response.json()["error"]) == {"code", "message", "fields"}

    run(api_schema, 2, send)
