"""The SSRF guard: link-local and metadata hosts refused, loopback and LANs allowed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.adapters.urls import (
    SETTING_NAME,
    UnsafeProviderUrlError,
    allow_link_local,
    check_provider_url,
    refusal_reason,
)
from detectflow.core.errors import PermanentProviderError
from detectflow.core.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def resolving_to(*addresses: str):  # type: ignore[no-untyped-def]
    """A resolver answering fixed addresses.

    A stand-in for DNS: no real name on this machine resolves to a metadata or
    link-local address, and /etc/hosts is not ours to edit.
    """
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return list(addresses)

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254:443/x",
        "http://169.254.1.7:8080/detect",
        "grpc://169.254.169.254:50051",
        "mqtts://169.254.10.10:8883/topic",
        "http://[fe80::1]:80/detect",
        "http://[fd00:ec2::254]/latest",
        "http://[::ffff:169.254.169.254]/",
        "http://100.100.100.200/latest/meta-data",
        "http://2852039166/",  # 169.254.169.254 written as one decimal number
        "http://0xa9fea9fe/",  # ... and in hex
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./computeMetadata/v1/",
        "http://metadata/computeMetadata/v1/",
    ],
)
async def test_link_local_and_metadata_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeProviderUrlError) as caught:
        await check_provider_url(url)
    assert f"DETECTFLOW_{SETTING_NAME.upper()}=true" in caught.value.message
    assert isinstance(caught.value, PermanentProviderError)
    assert caught.value.code == "unsafe_provider_url"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001/detect",
        "http://localhost:8001/detect",
        "grpc://[::1]:50051",
        "mqtt://127.0.0.1:1883/detectflow/detect",
        "http://10.0.0.5/detect",
        "http://192.168.1.20:32168/v1/vision/detection",
    ],
)
async def test_loopback_and_private_networks_are_allowed(url: str) -> None:
    addresses = await check_provider_url(url)
    assert addresses, "the host was resolved and checked"


async def test_a_name_resolving_to_a_metadata_address_is_refused() -> None:
    resolver = resolving_to("10.1.2.3", "169.254.169.254")
    with pytest.raises(UnsafeProviderUrlError, match=r"169\.254\.169\.254 is a cloud metadata"):
        await check_provider_url("https://detector.example.com/detect", resolver=resolver)
    assert resolver.asked == [("detector.example.com", 443)]


async def test_the_default_port_of_each_scheme_is_resolved() -> None:
    resolver = resolving_to("127.0.0.1")
    for url in ("http://h", "grpc://h", "grpcs://h", "mqtt://h/t", "mqtts://h/t"):
        await check_provider_url(url, resolver=resolver)
    assert [port for _, port in resolver.asked] == [80, 50051, 443, 1883, 8883]


async def test_allowing_link_local_lifts_the_guard() -> None:
    assert await check_provider_url("http://169.254.169.254/", allow_link_local=True) == ()


@pytest.mark.parametrize(
    "url", ["scripted://local", "", "file:///tmp/models", "not a url", "http://[bad/"]
)
async def test_urls_the_guard_does_not_cover_pass_unchecked(url: str) -> None:
    assert await check_provider_url(url) == ()


async def test_an_unresolvable_host_is_not_refused() -> None:
    assert await check_provider_url("http://no-such-host.invalid/detect") == ()


def test_allow_link_local_is_off_by_default() -> None:
    assert allow_link_local(Settings()) is False


@pytest.mark.skipif(
    not hasattr(Settings(), SETTING_NAME),
    reason=f"Settings.{SETTING_NAME} is not added yet (the lead owns core/settings.py)",
)
def test_allow_link_local_is_read_from_the_environment() -> None:
    env = {f"DETECTFLOW_{SETTING_NAME.upper()}": "true"}
    assert allow_link_local(Settings.from_env(env)) is True


@given(
    st.one_of(
        st.ip_addresses(network="169.254.0.0/16"),
        st.ip_addresses(network="fe80::/10"),
        st.ip_addresses(network="::ffff:169.254.0.0/112"),
        st.ip_addresses(network="64:ff9b::169.254.0.0/112"),
    )
)
def test_every_link_local_address_is_refused(address: object) -> None:
    assert refusal_reason(str(address)) is not None


@given(
    st.one_of(
        st.ip_addresses(network="127.0.0.0/8"),
        st.ip_addresses(network="::1/128"),
        st.ip_addresses(network="10.0.0.0/8"),
        st.ip_addresses(network="172.16.0.0/12"),
        st.ip_addresses(network="192.168.0.0/16"),
        st.ip_addresses(network="fd12::/16"),
    )
)
def test_every_loopback_and_private_address_is_allowed(address: object) -> None:
    assert refusal_reason(str(address)) is None


def test_refusal_reason_ignores_what_is_not_an_address() -> None:
    assert refusal_reason("example.com") is None
    assert refusal_reason("fe80::1%eth0") == "fe80::1%eth0 is link-local"
