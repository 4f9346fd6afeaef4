"""The RunPod double itself, driven through the real runpod SDK where it can be: it must
behave like RunPod's control plane (a kill -9 and restart loses and repeats nothing, the
API key is checked, cancels behave as on RunPod) and its test hooks must do what the
master's tests rely on (planned faults and hangs, executions, kill-next-submitter)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import runpod

from tests.doubles.runpod.control import submitter_pid
from tests.doubles.runpod.process import RunPodDoubleProcess
from tests.doubles.runpod.server import RunPodDouble, SimulatedWorkers
from tests.support import wait_until

EP = "stillhouse-test"
OUTPUT = {"images": [{"key": "stillhouse/x.png", "node_id": "9"}], "comfy": {"version": "sim"}}
SUBMITTER = """
import os, sys, time, requests
owner = f"master-test-host-a-{os.getpid()}-0123456789ab"
headers = {"User-Agent": f"stillhouse/0.1.0 ({owner})"}
answer = requests.post(sys.argv[1], json={"input": {"job_id": "killed"}}, headers=headers)
print("survived", answer.status_code, flush=True)
time.sleep(30)
"""


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads its base URL from a module global; each test sets it (and monkeypatch
    puts it back)."""
    monkeypatch.setattr(runpod, "endpoint_url_base", runpod.endpoint_url_base)


def use(base_url: str) -> None:
    runpod.endpoint_url_base = base_url


def simulated(count: int, service_s: float, **kwargs: Any) -> RunPodDouble:
    return RunPodDouble(simulated=SimulatedWorkers(count, service_s, OUTPUT), **kwargs).start()


def post(url: str, **kwargs: Any) -> requests.Response:
    return requests.post(url, timeout=5, **kwargs)


def test_process_mode_survives_kill_9_losing_and_repeating_nothing(
    tmp_path: Path, sdk: None
) -> None:
    state_file = tmp_path / "runpod.sqlite3"
    service_s = 1.0
    double = RunPodDoubleProcess(state_file, simulated=(2, service_s, OUTPUT)).start()
    try:
        use(double.base_url)
        endpoint = runpod.Endpoint(EP, api_key="any")
        jobs = {f"j{n}": endpoint.run({"job_id": f"j{n}"}) for n in range(6)}
        statuses = lambda: [j["status"] for j in double.jobs()]  # noqa: E731
        wait_until(lambda: statuses().count("IN_PROGRESS") == 2, 5, what="two jobs running")
        before = {j["job_id"]: j for j in double.jobs()}
        double.kill()
        assert statuses_in(state_file) == {"IN_PROGRESS": 2, "IN_QUEUE": 4}
        double.start()
        restarted = time.time()
        after = {j["job_id"]: j for j in double.jobs()}
        running = [k for k, j in before.items() if j["status"] == "IN_PROGRESS"]
        assert all(after[k]["started_wall"] == before[k]["started_wall"] for k in running)
        done = lambda: all(j.status() == "COMPLETED" for j in jobs.values())  # noqa: E731
        wait_until(done, 10, 0.1, what="every job completed after the restart")
        assert all(j.output() == OUTPUT for j in jobs.values())
        assert double.executions() == {k: 1 for k in jobs}
        final = double.jobs()
        assert [j["job_id"] for j in final] == list(jobs)  # none lost, none added
        for job in final:  # each held its GPU service_s, as if the double never died
            due = job["started_wall"] + service_s
            assert due - 0.05 <= job["finished_wall"] < max(due, restarted) + 0.5, job
        starts = [j["started_wall"] for j in final]
        assert starts == sorted(starts), "queued jobs ran out of creation order"
    finally:
        double.stop()


def statuses_in(state_file: Path) -> dict[str, int]:
    """Read as another process would: the state file's `jobs` table."""
    with sqlite3.connect(state_file) as db:
        rows = db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
    return dict(rows)


def test_a_real_workers_job_survives_a_restart(tmp_path: Path) -> None:
    first = RunPodDouble(state_file=tmp_path / "s.sqlite3").start()
    root = f"http://127.0.0.1:{first.port}"
    job_id = post(f"{first.base_url}/{EP}/run", json={"input": {"job_id": "r"}}).json()["id"]
    assert requests.get(f"{root}/job-take/w1", timeout=5).json()["id"] == job_id
    first.stop()
    again = RunPodDouble(state_file=tmp_path / "s.sqlite3", port=first.port).start()
    try:
        post(f"{root}/job-done/w1?id={job_id}", json={"output": OUTPUT})
        answer = requests.get(f"{again.base_url}/{EP}/status/{job_id}", timeout=5).json()
        assert answer["status"] == "COMPLETED" and answer["output"] == OUTPUT
        assert again.executions() == {"r": 1}
    finally:
        again.stop()


def test_the_api_key_is_checked_as_runpods_gateway_does(sdk: None) -> None:
    double = simulated(1, 0.05, api_key="right-key")
    try:
        use(double.base_url)
        with pytest.raises(RuntimeError, match="Unauthorized"):
            runpod.Endpoint(EP, api_key="wrong-key").run({"job_id": "a"})
        for headers in ({"Authorization": "right-key"}, {}):  # the bare key is not it either
            answer = post(f"{double.base_url}/{EP}/run", json={"input": {}}, headers=headers)
            assert (answer.status_code, answer.text) == (401, "Unauthorized")
            assert answer.headers["Content-Type"].startswith("text/plain")
        for op in ("status/x", "health"):
            assert requests.get(f"{double.base_url}/{EP}/{op}", timeout=5).status_code == 401
        assert post(f"{double.base_url}/{EP}/cancel/x").status_code == 401
        assert not double.state.jobs
        job = runpod.Endpoint(EP, api_key="right-key").run({"job_id": "a"})
        wait_until(lambda: job.status() == "COMPLETED", 5, what="the job through the SDK")
        assert job.output() == OUTPUT
    finally:
        double.stop()


def test_unknown_endpoints_and_jobs_answer_404() -> None:
    double = RunPodDouble().start()
    try:
        base = double.base_url
        for url in (f"{base}/other/status/x", f"{base}/other/health"):
            answer = requests.get(url, timeout=5)
            assert (answer.status_code, answer.json()) == (404, {"error": "endpoint not found"})
        assert post(f"{base}/other/cancel/x").json() == {"error": "endpoint not found"}
        answer = requests.get(f"{base}/{EP}/status/rp-none", timeout=5)
        assert (answer.status_code, answer.json()) == (404, {"error": "request does not exist"})
        assert post(f"{base}/{EP}/cancel/rp-none").status_code == 404
    finally:
        double.stop()


async def fetch_status(base_url: str, job_id: str, session: aiohttp.ClientSession) -> Any:
    """What the master does: the SDK's job fetch."""
    use(base_url)
    return await runpod.AsyncioJob(EP, job_id, session, {"Authorization": "Bearer k"})._fetch_job()


def test_planned_faults_answer_as_planned(sdk: None) -> None:
    double = RunPodDouble().start()
    run_url = f"{double.base_url}/{EP}/run"
    try:
        double.fail_next("run", 503)
        answer = post(run_url, json={"input": {"job_id": "a"}})
        assert (answer.status_code, answer.json()) == (503, {"error": "planned 503"})
        assert not double.state.jobs, "a failed /run created a job"
        job_id = post(run_url, json={"input": {"job_id": "a"}}).json()["id"]
        double.fail_next("status", 503, body={"error": "upstream unavailable"})
        double.fail_next("status", 502, body="<html>Bad Gateway</html>", content_type="text/html")

        async def polls() -> None:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(KeyError):  # JSON without "status"
                    await fetch_status(double.base_url, job_id, session)
                with pytest.raises(aiohttp.ContentTypeError):
                    await fetch_status(double.base_url, job_id, session)
                assert (await fetch_status(double.base_url, job_id, session))["status"]

        asyncio.run(polls())
        double.fail_next("cancel", 500, times=2)
        assert [post(f"{double.base_url}/{EP}/cancel/{job_id}").status_code for _ in "abc"] == [
            500,
            500,
            200,
        ]
        made = [(op, job, status) for _, op, job, status in double.state.requests]
        assert made[:2] == [("run", None, 503), ("run", job_id, 200)]
        assert [s for op, _, s in made if op == "status"] == [503, 502, 200]
    finally:
        double.stop()


def test_a_hung_request_is_handled_after_its_hang() -> None:
    double = RunPodDouble().start()
    run_url = f"{double.base_url}/{EP}/run"
    try:
        double.hang_next("run", 0.6)
        with pytest.raises(requests.Timeout):
            requests.post(run_url, json={"input": {"job_id": "h"}}, timeout=0.2)
        assert not double.state.jobs
        wait_until(lambda: double.state.jobs, 3, what="the hung /run to be accepted anyway")
        (record,) = double.state.requests
        assert record.op == "run" and record.status == 200
        began = time.monotonic()
        assert post(run_url, json={"input": {"job_id": "h"}}).ok
        assert time.monotonic() - began < 0.5, "the hang was used up"
    finally:
        double.stop()


def test_kill_next_submitter_kills_the_master_after_accepting(tmp_path: Path) -> None:
    double = RunPodDouble(state_file=tmp_path / "s.sqlite3").start()
    root = f"http://127.0.0.1:{double.port}"
    run_url = f"{double.base_url}/{EP}/run"
    try:
        post(f"{root}/_test/kill-next-submitter").raise_for_status()
        assert post(run_url, json={"input": {"job_id": "plain"}}).ok  # no owner: armed still
        assert double.state.kill_armed
        child = subprocess.Popen(
            [sys.executable, "-c", SUBMITTER, run_url],
            stdout=subprocess.PIPE,
            start_new_session=True,  # its own group, as masters are
        )
        out, _ = child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL and b"survived" not in out
        (kill,) = requests.get(f"{root}/_test/kills", timeout=5).json()
        (job,) = double.jobs_for("killed")
        assert (kill["job_id"], kill["runpod_id"], kill["pid"]) == ("killed", job.id, child.pid)
        assert double.kills == [kill] and not double.state.kill_armed
        with sqlite3.connect(tmp_path / "s.sqlite3") as db:
            rows = db.execute("SELECT job_id, status FROM jobs ORDER BY seq").fetchall()
        assert rows == [("plain", "IN_QUEUE"), ("killed", "IN_QUEUE")]
    finally:
        double.stop()


def test_the_submitter_pid_is_read_from_the_right_of_the_owner() -> None:
    assert submitter_pid("stillhouse/1.2 (master-my-host-01-4242-0123456789ab)") == 4242
    assert submitter_pid("python-requests/2.34") is None
    assert submitter_pid("stillhouse/1.2 (master-host-x-abcdef012345)") is None


def test_cancel_frees_a_simulated_gpu_and_never_touches_a_final_job(sdk: None) -> None:
    double = simulated(1, 1.0)
    try:
        use(double.base_url)
        endpoint = runpod.Endpoint(EP, api_key="k")
        running = endpoint.run({"job_id": "a"})
        wait_until(lambda: running.status() == "IN_PROGRESS", 2, what="a running")
        queued = endpoint.run({"job_id": "b"})
        assert queued.cancel()["status"] == "CANCELLED"
        assert running.cancel()["status"] == "CANCELLED"
        cancelled_at = time.time()
        after = endpoint.run({"job_id": "c"})
        wait_until(lambda: after.status() == "IN_PROGRESS", 2, what="c running")
        (c,) = double.jobs_for("c")
        assert c.started_wall is not None and c.started_wall - cancelled_at < 0.5, "slot held"
        wait_until(lambda: after.status() == "COMPLETED", 3, what="c completed")
        assert after.cancel()["status"] == "COMPLETED"  # its images won
        assert after._fetch_job()["output"] == OUTPUT
        assert double.executions() == {"a": 1, "c": 1}  # b was never taken
        assert [j.status for j in double.jobs_for("a")] == ["CANCELLED"]
    finally:
        double.stop()


def test_cancelling_a_real_workers_job_is_offered_on_job_stop() -> None:
    double = RunPodDouble().start()
    root = f"http://127.0.0.1:{double.port}"
    try:
        job_id = post(f"{double.base_url}/{EP}/run", json={"input": {"job_id": "w"}}).json()["id"]
        assert requests.get(f"{root}/job-take/w1", timeout=5).json()["id"] == job_id
        assert post(f"{double.base_url}/{EP}/cancel/{job_id}").json()["status"] == "CANCELLED"
        stop = requests.get(f"{root}/job-stop/w1", timeout=5).json()
        assert stop == {"jobsToStop": [job_id]}
        post(f"{root}/job-done/w1?id={job_id}", json={"output": OUTPUT})  # too late: dropped
        (job,) = double.jobs_for("w")
        assert job.status == "CANCELLED" and job.output is None
    finally:
        double.stop()
