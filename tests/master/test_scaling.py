"""`stillhouse scale workers`: the RunPod endpoint's worker counts, set through RunPod's
REST API against the endpoint double, which checks the call's shape as RunPod does."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
from click.testing import CliRunner

from stillhouse.cli import cli
from tests.doubles.runpod.server import RunPodDouble

KEY = "scale-test-key"


@pytest.fixture
def double() -> Iterator[RunPodDouble]:
    started = RunPodDouble(api_key=KEY).start()
    yield started
    started.stop()


def scale(double: RunPodDouble, *args: str, key: str = KEY) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STILLHOUSE_")}
    env.update(
        STILLHOUSE_RUNPOD__ENDPOINT_ID=double.endpoint_id,
        STILLHOUSE_RUNPOD__API_KEY=key,
        STILLHOUSE_RUNPOD__REST_URL=double.rest_url,
    )
    done = CliRunner().invoke(cli, ["scale", "workers", *args], env=env)
    return done.exit_code, done.output


def updates(double: RunPodDouble) -> list[int]:
    return [r.status for r in double.state.requests if r.op == "update_endpoint"]


def test_scale_workers_sets_the_endpoints_minimum_and_maximum(double: RunPodDouble) -> None:
    code, output = scale(double, "--min", "1", "--max", "8")
    assert code == 0, output
    assert f"RunPod endpoint {double.endpoint_id} now keeps 1 to 8 workers." in output
    assert double.state.settings["workersMin"] == 1
    assert double.state.settings["workersMax"] == 8
    assert updates(double) == [200]


def test_a_refused_key_changes_nothing_and_says_so(double: RunPodDouble) -> None:
    code, output = scale(double, "--min", "0", "--max", "2", key="wrong-key")
    assert code == 1
    assert "Not changed: RunPod refused the API key (401)." in output
    assert double.state.settings["workersMax"] == 3  # the double's starting value
    assert updates(double) == [401]


def test_a_minimum_above_the_maximum_is_refused_before_asking_runpod(
    double: RunPodDouble,
) -> None:
    code, output = scale(double, "--min", "5", "--max", "2")
    assert code == 1 and "--min 5 must be between 0 and --max 2" in output
    assert updates(double) == []


def test_the_double_checks_the_calls_shape_as_runpod_does(double: RunPodDouble) -> None:
    url = f"{double.rest_url}/endpoints/{double.endpoint_id}"
    auth = {"Authorization": f"Bearer {KEY}"}
    unknown = requests.patch(url, json={"workers": 3}, headers=auth, timeout=5)
    assert unknown.status_code == 400 and "unknown fields" in unknown.json()["error"]
    crossed = requests.patch(url, json={"workersMin": 4, "workersMax": 1}, headers=auth, timeout=5)
    assert crossed.status_code == 400
    fractional = requests.patch(url, json={"workersMax": 2.5}, headers=auth, timeout=5)
    assert fractional.status_code == 400
    other = requests.patch(
        f"{double.rest_url}/endpoints/nope", json={"workersMax": 2}, headers=auth, timeout=5
    )
    assert other.status_code == 404
    assert double.state.settings["workersMax"] == 3
