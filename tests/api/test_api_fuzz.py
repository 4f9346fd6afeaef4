"""schemathesis drives every route of the API from its own OpenAPI document, with
generated input inside the schema and outside it, and runs every check it has: no answer
may be a server error or outside what the operation declares (status, headers, body
schema, content type), input outside the schema must be refused, a key must be asked for.
One check is left out: input the schema allows may still be refused with a 422 (an
unknown workflow name, a filtered word — rules the OpenAPI document cannot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode, checks
from schemathesis.config import SchemathesisConfig
from sqlalchemy import Engine

from api.app import make_app
from stillhouse.services import Services
from tests.api.conftest import KEY
from tests.bot.conftest import bot_settings, empty_moderation, make_services

# No worker runs here: POST /v1/images would wait its whole `wait_s` for an image.
FIXED_QUERY = {"POST /v1/images": {"wait_s": 0}}
EXAMPLES = 40  # per operation, both kinds together: the test stays well under a minute
# Input outside the schema must get one of these (413: a generated body past the limit).
REFUSALS = ["400", "401", "403", "404", "405", "409", "413", "415", "422", "429"]
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}
)


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
    schema = schemathesis.openapi.from_asgi("/openapi.json", make_app(services), config=CONFIG)
    every_check = [
        cast(checks.CheckFunction, check)
        for check in checks.CHECKS.get_all()
        if check is not checks.positive_data_acceptance
    ]
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 6, [op.label for op in operations]
    for operation in operations:
        query = FIXED_QUERY.get(operation.label)
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE, query=query),
            operation.as_strategy(GenerationMode.NEGATIVE, query=query),
        )

        @given(case=cases)
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: Case[Any]) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=every_check)

        call()
