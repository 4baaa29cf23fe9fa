"""Schemathesis over the generated OpenAPI description, against the served API on a seeded
SQLite store: valid and invalid requests to every operation, and never a 5xx; valid answers
match the description."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from lumen_alerting.threader.incidents.openapi import openapi_document
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
    case.call_and_validate(
        base_url=served.url,
        headers=AUTH,
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )
