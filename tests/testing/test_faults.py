"""HttpFaultServer fails each way it promises, over real loopback HTTP, and stops cleanly."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from detectflow.testing import HttpFaultServer


@pytest.fixture(scope="module")
def faults() -> Iterator[HttpFaultServer]:
    with HttpFaultServer(hold_seconds=30) as server:
        yield server


@pytest.mark.parametrize("code", [400, 401, 429, 500, 503])
def test_status_paths_answer_that_status_with_an_error_body(
    faults: HttpFaultServer, code: int
) -> None:
    answer = httpx.post(faults.status_url(code) + "/v1/vision/detection", content=b"frame")
    assert answer.status_code == code
    assert answer.json() == {"error": f"simulated fault: HTTP {code}"}


def test_garbage_answers_200_with_a_body_that_is_not_json(faults: HttpFaultServer) -> None:
    answer = httpx.post(faults.garbage_url, content=b"frame")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError, match="Expecting value"):
        answer.json()


def test_slow_holds_the_request_past_the_client_timeout(faults: HttpFaultServer) -> None:
    start = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(faults.slow_url, content=b"frame", timeout=0.3)
    assert 0.3 <= time.perf_counter() - start < 2.0


def test_drop_closes_the_connection_without_an_answer(faults: HttpFaultServer) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(faults.drop_url, content=b"frame")


def test_refused_url_refuses_connections(faults: HttpFaultServer) -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.post(faults.refused_url, content=b"frame")


def test_unknown_fault_paths_answer_404(faults: HttpFaultServer) -> None:
    assert httpx.get(faults.url + "/nonsense").status_code == 404


def test_hits_count_requests_per_fault() -> None:
    with HttpFaultServer() as server:
        httpx.post(server.status_url(503), content=b"x")
        httpx.post(server.status_url(400), content=b"x")
        httpx.post(server.garbage_url, content=b"x")
        assert server.hits == {"status": 2, "garbage": 1}


def test_stop_releases_held_requests_at_once_and_is_idempotent() -> None:
    server = HttpFaultServer(hold_seconds=60).start()
    with httpx.Client(timeout=10) as client:
        outcome: list[int] = []
        waiter = threading.Thread(
            target=lambda: outcome.append(client.post(server.slow_url, content=b"x").status_code)
        )
        waiter.start()
        deadline = time.monotonic() + 5
        while not server.hits["slow"] and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.perf_counter()
        server.stop()
        waiter.join(5)
        assert time.perf_counter() - start < 2.0
        assert outcome == [200]
    server.stop()


def test_urls_before_start_say_it_is_not_started() -> None:
    server = HttpFaultServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.refused_url
    server.stop()
