"""GET /metrics on the API: requests by method, route template (never an id) and status,
and their durations."""

from __future__ import annotations

from fastapi.testclient import TestClient

PROMPT = {"prompt": "a lighthouse at dawn"}


def test_requests_are_counted_under_their_route_template_and_status(client: TestClient) -> None:
    created = client.post("/v1/generations", json=PROMPT).json()
    client.get(f"/v1/generations/{created['id']}")
    client.get("/v1/generations/NoSuchGeneration00")
    client.post("/v1/generations", json=PROMPT, headers={"Authorization": "Bearer wrong-key-x"})
    page = client.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    text = page.text
    one = "/v1/generations/{generation_id}"
    assert (
        'stillhouse_api_requests_total{method="POST",route="/v1/generations",status="202"} 1.0'
        in text
    )
    assert (
        'stillhouse_api_requests_total{method="POST",route="/v1/generations",status="401"} 1.0'
        in text
    )
    assert f'stillhouse_api_requests_total{{method="GET",route="{one}",status="200"}} 1.0' in text
    assert f'stillhouse_api_requests_total{{method="GET",route="{one}",status="404"}} 1.0' in text
    assert f'stillhouse_api_request_seconds_count{{route="{one}"}} 2.0' in text
    assert created["id"] not in text  # ids never become labels


def test_a_path_no_route_matches_is_counted_as_unmatched(client: TestClient) -> None:
    client.get("/v1/no-such-thing")
    text = client.get("/metrics").text
    assert 'route="unmatched",status="404"} 1.0' in text
