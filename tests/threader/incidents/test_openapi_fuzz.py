"""Schemathesis over the generated OpenAPI description, against the served API on a seeded
SQLite store: valid and invalid requests to every operation, and never a 5xx; valid answers
match the description."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from lumen_alerting.threader.incidents.openapi import IncidentListQuery, openapi_document
from tests.threader.incidents.conftest import postgres_database
from tests.threader.incidents.incident_app import (
    API_TOKEN,
    BASE_TIME,
    IncidentApp,
    RecordingSilences,
    received,
)

pytestmark = pytest.mark.timeout(180)

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}

schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=50
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_of_the_fuzz(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'incidents.db'}"
    else:
        # PostgreSQL refuses what SQLite takes (NUL in text, 64-bit ids): no 5xx on it either.
        yield from postgres_database()


@pytest.fixture(scope="module")
def served(database_of_the_fuzz: str) -> Iterator[IncidentApp]:
    app = IncidentApp(database_of_the_fuzz, silences=RecordingSilences()).start()
    try:
        services = ("gateway", "ion", "billing")
        severities = ("critical", "warning", "")
        for n in range(12):
            app.record(
                received(
                    f"fz{n}",
                    service=services[n % 3],
                    severity=severities[n % 3],
                    starts_at=BASE_TIME + timedelta(minutes=n),
                    links={"dashboardURL": f"https://grafana.example/d/{n}"}
                    if n % 4 == 0
                    else None,
                )
            )
        yield app
    finally:
        app.stop()


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_request_gets_a_server_error(case: Any, served: IncidentApp) -> None:
    incident_id = case.path_parameters.get("id") if case.path_parameters else None
    if isinstance(incident_id, int) and incident_id > 0:
        # Mostly seeded incidents (1..12, and 13 that does not exist), so that random bodies
        # reach the actions and the database, not only the 404.
        case.path_parameters["id"] = 1 + incident_id % 13
    case.call_and_validate(
        base_url=served.url,
        headers=AUTH,
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )


def test_the_served_document_is_the_generated_one_and_covers_every_route(
    served: IncidentApp,
) -> None:
    document = httpx.get(f"{served.url}/api/v1/openapi.json", timeout=30).json()
    assert document == openapi_document()
    assert document["openapi"].startswith("3.1")
    listing = document["paths"]["/api/v1/incidents"]["get"]
    assert {parameter["name"] for parameter in listing["parameters"]} == set(
        IncidentListQuery.model_fields
    )
    schemas = document["components"]["schemas"]
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document))
    assert refs and all(ref in schemas for ref in refs)
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert operations == {
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/incidents"),
        ("GET", "/api/v1/incidents/{id}"),
        ("POST", "/api/v1/incidents/{id}/acknowledge"),
        ("POST", "/api/v1/incidents/{id}/resolve"),
        ("POST", "/api/v1/incidents/{id}/silence"),
        ("POST", "/api/v1/incidents/{id}/end-silence"),
    }
