"""Credentials out of shown text (detectflow/core/redact.py): properties over any URL."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.frames import make_frame
from detectflow.core.pipeline import failed_result
from detectflow.core.redact import (
    REDACTED,
    SECRET_PARAMETERS,
    install_log_redaction,
    redact_text,
)
from detectflow.samples import sample_frame

secrets = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~!$", min_size=4, max_size=24)
hosts = st.sampled_from(["127.0.0.1", "detector.lan", "[::1]", "example.com:8443"])
schemes = st.sampled_from(["http", "https", "grpc", "grpcs", "mqtt", "mqtts", "redis"])


@given(schemes, secrets, secrets, hosts, st.sampled_from(["", "/detect", "/v1/x?y=1"]))
def test_userinfo_is_replaced_and_the_rest_of_the_url_kept(
    scheme: str, user: str, password: str, host: str, path: str
) -> None:
    url = f"{scheme}://{user}:{password}@{host}{path}"
    text = f"could not reach provider at {url}: connection refused"
    shown = redact_text(text)
    assert (
        shown
        == f"could not reach provider at {scheme}://{REDACTED}@{host}{path}: connection refused"
    )
    assert f":{password}@" not in shown


@given(st.sampled_from(SECRET_PARAMETERS), secrets, st.booleans())
def test_credential_query_values_are_replaced(name: str, value: str, upper: bool) -> None:
    key = name.upper() if upper else name
    url = f"http://host/detect?x=1&{key}={value}&y=2"
    assert redact_text(f"'{url}'") == f"'http://host/detect?x=1&{key}={REDACTED}&y=2'"


@given(st.text(max_size=60))
def test_redaction_is_idempotent_and_never_grows_a_credential(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


@pytest.mark.parametrize(
    "text",
    [
        "provider at http://host/path@v2 answered HTTP 500",  # '@' after the host: no userinfo
        "keys=3 token-count=4",
        "mail me at ops@example.com",
    ],
)
def test_text_without_credentials_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_a_failed_frame_carries_the_redacted_reason_into_its_event() -> None:
    frame = make_frame("cam-1", sample_frame("cam-1", 0), max_bytes=1 << 20)
    result = failed_result(frame, "could not reach provider at http://u:pw123@h/d?api_key=k9")
    assert result.error == "could not reach provider at http://***@h/d?api_key=***"
    assert all("pw123" not in e.message and "k9" not in e.message for e in result.events)


def test_log_records_are_redacted_whoever_logs_them(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    url = "http://user:pw-in-log@host/detect?token=tk-in-log"
    with caplog.at_level(logging.INFO):
        logging.getLogger("httpx").info("HTTP Request: POST %s", url)
        try:
            raise ConnectionError(f"could not reach {url}")
        except ConnectionError:
            logging.getLogger("detectflow.test").exception("failed")
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert "http://***@host/detect?token=***" in text
    assert "pw-in-log" not in text and "tk-in-log" not in text
