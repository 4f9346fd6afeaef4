"""schemathesis drives every route of the API from its own OpenAPI document, with
generated valid and invalid input: no answer may be a server error, every answer must
match the schema it declares, and input outside the schema must be refused. (Input the
schema allows may still be refused with a 422: an unknown workflow name, a filtered word —
rules the OpenAPI document cannot state — so that one check is left out.)"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, checks
from sqlalchemy import Engine

from api.app import make_app
from stillhouse.services import Services
from tests.api.conftest import KEY
from tests.bot.conftest import bot_settings, empty_moderation, make_services


def test_no_input_makes_the_api_fail_or_break_its_schema(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    empty_moderation(engine)
    config = bot_settings(
        database_url,
        tmp_path,
        {"per_minute": 10_000, "max_active_jobs": 1000},
        api={"keys": f"fuzz:{KEY}"},
        storage={"public_base_url": "http://testserver/files"},
    )
    services: Services = make_services(engine, config)
    schema = schemathesis.openapi.from_asgi("/openapi.json", make_app(services))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: Case) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {KEY}"},
                excluded_checks=[checks.positive_data_acceptance],
            )

        call()
