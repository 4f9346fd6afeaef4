"""/admin scale: an operator sets the RunPod endpoint's worker counts from Discord (through
RunPod's REST API, the endpoint double checking the call); a server's manager cannot."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from bot import messages
from stillhouse.services import Services
from tests.bot.harness import CHANNEL, GUILD, MANAGER, OPERATOR, running_bot
from tests.doubles.discord import DiscordEmulator
from tests.doubles.runpod.server import RunPodDouble

KEY = "admin-scale-key"


@pytest.fixture
def double() -> Iterator[RunPodDouble]:
    started = RunPodDouble(api_key=KEY).start()
    yield started
    started.stop()


def admin_scale(emu: DiscordEmulator, caller: int, minimum: int, maximum: int) -> str:
    ix = emu.slash_command(
        GUILD,
        CHANNEL,
        caller,
        "admin",
        subcommand="scale",
        options={"minimum": minimum, "maximum": maximum},
    )
    response = ix.wait_response()
    assert response["data"]["flags"] == 64, "admin answers are ephemeral"
    return str(response["data"]["content"])


def with_endpoint(services: Services, double: RunPodDouble, key: str = KEY) -> Services:
    runpod = services.settings.runpod.model_copy(
        update={
            "endpoint_id": double.endpoint_id,
            "rest_url": double.rest_url,
            "api_key": SecretStr(key),
        }
    )
    settings = services.settings.model_copy(update={"runpod": runpod})
    return dataclasses.replace(services, settings=settings)


def test_an_operator_scales_the_gpu_workers_and_a_manager_cannot(
    emu: DiscordEmulator, maria_services: Services, double: RunPodDouble
) -> None:
    with running_bot(with_endpoint(maria_services, double), emu):
        assert admin_scale(emu, MANAGER, 0, 1) == messages.OPERATORS_ONLY
        answer = admin_scale(emu, OPERATOR, 2, 6)
    assert answer == f"RunPod now keeps 2 to 6 GPU workers (endpoint {double.endpoint_id})."
    assert (double.state.settings["workersMin"], double.state.settings["workersMax"]) == (2, 6)
    assert [r.status for r in double.state.requests if r.op == "update_endpoint"] == [200]


def test_runpods_refusal_is_told_in_a_sentence(
    emu: DiscordEmulator, maria_services: Services, double: RunPodDouble
) -> None:
    with running_bot(with_endpoint(maria_services, double, key="wrong"), emu):
        answer = admin_scale(emu, OPERATOR, 1, 2)
    assert answer == "RunPod did not change the endpoint: RunPod refused the API key (401)."
    assert double.state.settings["workersMax"] == 3
