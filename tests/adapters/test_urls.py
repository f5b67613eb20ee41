"""The SSRF guard: link-local and metadata hosts refused, loopback and LANs allowed."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.adapters.urls import (
    METADATA_ADDRESSES,
    SETTING_NAME,
    UnsafeProviderUrlError,
    allow_link_local,
    check_provider_url,
    embedded_ipv4,
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


@given(st.one_of(st.ip_addresses(network="169.254.0.0/16"), st.ip_addresses(network="fe80::/10")))
def test_every_link_local_address_is_refused_as_link_local_or_metadata(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    text = str(address)
    if address in METADATA_ADDRESSES:
        assert refusal_reason(text) == f"{text} is a cloud metadata address"
    else:
        assert refusal_reason(text) == f"{text} is link-local"


@given(
    st.one_of(
        st.ip_addresses(network="::ffff:169.254.0.0/112"),
        st.ip_addresses(network="64:ff9b::169.254.0.0/112"),
    )
)
def test_an_address_embedding_a_link_local_one_is_refused_saying_so(
    address: ipaddress.IPv6Address,
) -> None:
    text = str(address)
    inside = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)  # the low 32 bits carry it
    if inside in METADATA_ADDRESSES:
        assert refusal_reason(text) == f"{text} is a cloud metadata address (or embeds one)"
    else:
        assert refusal_reason(text) == f"{text} is link-local (or embeds one)"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "169.254.169.254 is a cloud metadata address"),
        ("169.254.170.2", "169.254.170.2 is a cloud metadata address"),
        ("fd00:ec2::254", "fd00:ec2::254 is a cloud metadata address"),
        ("100.100.100.200", "100.100.100.200 is a cloud metadata address"),
        (
            "::ffff:169.254.169.254",
            "::ffff:169.254.169.254 is a cloud metadata address (or embeds one)",
        ),
        ("64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe is a cloud metadata address (or embeds one)"),
    ],
)
def test_metadata_addresses_are_named_as_such(address: str, reason: str) -> None:
    """fd00:ec2::254 and 100.100.100.200 are not link-local: only the list catches them."""
    assert refusal_reason(address) == reason


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


# -- every IPv6 form that embeds an IPv4 address ----------------------------------------

link_local_v4 = st.integers(min_value=0, max_value=0xFFFF).map(
    lambda n: ipaddress.IPv4Address((169 << 24) | (254 << 16) | n)
)


def _embeddings(v4: ipaddress.IPv4Address) -> list[str]:
    n = int(v4)
    return [
        f"::ffff:{v4}",  # IPv4-mapped
        f"::{v4}",  # IPv4-compatible
        str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1)),  # 6to4
        f"64:ff9b::{v4}",  # NAT64, well-known prefix
        str(ipaddress.IPv6Address((0x0064FF9B0001 << 80) | n)),  # NAT64, local-use prefix
        # Teredo: server 65.54.227.120, client obfuscated (bits flipped) in the low 32 bits
        str(ipaddress.IPv6Address((0x20010000 << 96) | (0x4136E378 << 64) | (n ^ 0xFFFFFFFF))),
    ]


@given(link_local_v4)
def test_every_ipv6_embedding_of_a_link_local_address_is_refused(v4: ipaddress.IPv4Address) -> None:
    for address in _embeddings(v4):
        assert refusal_reason(address) is not None, address
        assert v4 in embedded_ipv4(ipaddress.IPv6Address(address)), address


@given(st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address))
def test_an_embedding_is_refused_exactly_when_its_ipv4_is(v4: ipaddress.IPv4Address) -> None:
    plain = refusal_reason(str(v4)) is not None
    for address in _embeddings(v4):
        assert (refusal_reason(address) is not None) == plain, address


@pytest.mark.parametrize("address", ["::", "::1", "2001:db8::1", "::ffff:10.0.0.1", "::10.0.0.1"])
def test_plain_and_private_ipv6_forms_stay_allowed(address: str) -> None:
    assert refusal_reason(address) is None


async def test_the_reviews_ipv4_compatible_probe_is_refused() -> None:
    with pytest.raises(UnsafeProviderUrlError, match="metadata"):
        await check_provider_url("http://[::169.254.169.254]/")
