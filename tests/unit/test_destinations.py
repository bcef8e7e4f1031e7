"""`app.core.destinations`: which webhook URLs are valid and which addresses they may reach.

Nothing here connects anywhere: names are resolved by resolvers the tests control (and one
lookup of "localhost", which /etc/hosts answers), and every URL is only parsed and checked.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

import pytest

from app.core.bounds import WEBHOOK_URL_MAX_LENGTH
from app.core.destinations import (
    BlockedDestination,
    Destination,
    InvalidWebhookUrl,
    IPNetwork,
    UnresolvableDestination,
    WebhookUrl,
    allowed_networks,
    default_resolver,
    is_allowed_address,
    parse_webhook_url,
    resolve_destination,
)

# Non-public destinations: run in a namespace with only loopback (scripts/run-isolated-tests.sh).
pytestmark = pytest.mark.isolated_network

# Addresses webhooks may not reach by default, each with a network an operator could allow.
REFUSED_BY_DEFAULT = [
    ("127.0.0.1", "127.0.0.0/8"),  # loopback
    ("127.255.255.254", "127.0.0.0/8"),
    ("10.0.0.5", "10.0.0.0/8"),  # RFC 1918
    ("172.16.3.4", "172.16.0.0/12"),
    ("192.168.1.1", "192.168.0.0/16"),
    ("100.64.0.1", "100.64.0.0/10"),  # CGNAT
    ("100.127.255.254", "100.64.0.0/10"),
    ("169.254.169.254", "169.254.169.254/32"),  # cloud metadata
    ("169.254.1.1", "169.254.0.0/16"),  # link-local
    ("0.0.0.0", "0.0.0.0/32"),  # unspecified
    ("0.1.2.3", "0.0.0.0/8"),  # "this network"
    ("192.0.2.10", "192.0.2.0/24"),  # documentation
    ("192.0.0.8", "192.0.0.0/24"),  # IETF protocol assignments (Python 3.11 calls it global)
    ("192.0.0.9", "192.0.0.0/24"),  # their PCP anycast: global, but no webhook receiver
    ("192.88.99.1", "192.88.99.0/24"),  # deprecated 6to4 relay anycast (likewise)
    ("198.18.0.1", "198.18.0.0/15"),  # benchmarking
    ("224.0.0.1", "224.0.0.0/4"),  # multicast (Python calls it global)
    ("239.255.255.250", "224.0.0.0/4"),
    ("240.0.0.1", "240.0.0.0/4"),  # reserved
    ("255.255.255.255", "255.255.255.255/32"),  # broadcast
    ("::1", "::1/128"),  # IPv6 loopback
    ("::", "::/128"),  # IPv6 unspecified
    ("fc00::1", "fc00::/7"),  # unique local
    ("fd12:3456::1", "fc00::/7"),
    ("fe80::1", "fe80::/10"),  # link-local
    ("ff02::1", "ff00::/8"),  # multicast
    ("2001:db8::1", "2001:db8::/32"),  # documentation
    ("2001::1", "2001::/32"),  # Teredo
    ("fec0::1", "fec0::/10"),  # site-local (Python 3.11 calls it global)
    ("3fff::1", "3fff::/20"),  # documentation, RFC 9637 (likewise)
    ("100::1", "100::/64"),  # discard-only
    # IPv6 carrying a private IPv4 address: judged by the IPv4 address.
    ("::ffff:127.0.0.1", "127.0.0.0/8"),  # IPv4-mapped
    ("::ffff:10.0.0.1", "10.0.0.0/8"),
    ("::ffff:169.254.169.254", "169.254.0.0/16"),
    ("::127.0.0.1", "127.0.0.0/8"),  # IPv4-compatible
    ("::10.0.0.1", "10.0.0.0/8"),
    ("64:ff9b::a00:1", "10.0.0.0/8"),  # NAT64 of 10.0.0.1
    ("64:ff9b::7f00:1", "127.0.0.0/8"),
    ("2002:a00:1::1", "10.0.0.0/8"),  # 6to4 of 10.0.0.1 (Python calls it global)
    ("2002:7f00:1::", "127.0.0.0/8"),
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.1",  # just above
    "2606:4700:4700::1111",
    "2a00:1450:4001:82a::200e",
    "::ffff:8.8.8.8",  # carries a public address
    "64:ff9b::808:808",
    "2002:808:808::1",
]


def nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ip_network(cidr) for cidr in cidrs)


class FixedResolver:
    """A resolver the test controls: answers from a table, counts its calls."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.answers[host])


# --- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "network"), REFUSED_BY_DEFAULT)
def test_non_public_address_is_refused_by_default(address: str, network: str) -> None:
    assert not is_allowed_address(ip_address(address), ())


@pytest.mark.parametrize(("address", "network"), REFUSED_BY_DEFAULT)
def test_non_public_address_is_allowed_inside_an_allowed_network(
    address: str, network: str
) -> None:
    assert is_allowed_address(ip_address(address), nets(network))


@pytest.mark.parametrize(("address", "network"), REFUSED_BY_DEFAULT)
def test_an_unrelated_allowed_network_does_not_allow_it(address: str, network: str) -> None:
    # 203.0.113.0/24 and 2001:db8:ffff::/48 contain none of the addresses above.
    assert not is_allowed_address(ip_address(address), nets("203.0.113.0/24", "2001:db8:ffff::/48"))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_address_is_allowed(address: str) -> None:
    assert is_allowed_address(ip_address(address), ())


def test_allowed_ipv6_network_allows_the_ipv6_address_itself() -> None:
    assert is_allowed_address(ip_address("fd00::5"), nets("fd00::/8"))
    assert not is_allowed_address(ip_address("fd01::5"), nets("fd00::/16"))


def test_allowed_networks_reads_settings_values() -> None:
    assert allowed_networks(["127.0.0.0/8", " 10.1.2.3/16", "fd00::/8"]) == (
        IPv4Network("127.0.0.0/8"),
        IPv4Network("10.1.0.0/16"),  # host bits ignored, as Settings accepts them
        IPv6Network("fd00::/8"),
    )
    assert allowed_networks([]) == ()


def test_allowed_networks_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="does not appear to be"):
        allowed_networks(["not-a-network"])


# --- URL parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.example.com/in", WebhookUrl("https", "hooks.example.com", 443, "/in")),
        ("http://hooks.example.com", WebhookUrl("http", "hooks.example.com", 80, "/")),
        (
            "HTTPS://Hooks.Example.COM:8443/a/b?x=1&y=2#frag",
            WebhookUrl("https", "hooks.example.com", 8443, "/a/b?x=1&y=2"),
        ),
        ("http://example.com:/x", WebhookUrl("http", "example.com", 80, "/x")),
        (
            "https://bücher.example/ä?q=ü",
            WebhookUrl("https", "xn--bcher-kva.example", 443, "/%C3%A4?q=%C3%BC"),
        ),
        ("https://example.com/a%20b", WebhookUrl("https", "example.com", 443, "/a%20b")),
        ("http://[2606:4700::1111]:8080/", WebhookUrl("http", "2606:4700::1111", 8080, "/")),
        ("http://93.184.215.14/", WebhookUrl("http", "93.184.215.14", 80, "/")),
    ],
)
def test_parse_valid_urls(url: str, expected: WebhookUrl) -> None:
    assert parse_webhook_url(url) == expected


@pytest.mark.parametrize(
    ("url", "host_header"),
    [
        ("https://example.com/", "example.com"),
        ("https://example.com:443/", "example.com"),
        ("http://example.com:443/", "example.com:443"),
        ("http://[2606:4700::1111]/", "[2606:4700::1111]"),
        ("https://[2606:4700::1111]:8443/", "[2606:4700::1111]:8443"),
    ],
)
def test_host_header(url: str, host_header: str) -> None:
    assert parse_webhook_url(url).host_header == host_header


# Every spelling libc's inet_aton (and browsers) accept for 127.0.0.1 and 10.0.0.1.
IP_SPELLINGS = [
    ("http://2130706433/", "127.0.0.1"),  # decimal
    ("http://0x7f000001/", "127.0.0.1"),  # hex
    ("http://0X7F000001/", "127.0.0.1"),
    ("http://0x7f.0.0.1/", "127.0.0.1"),  # hex part
    ("http://0x7f.0x0.0x0.0x1/", "127.0.0.1"),
    ("http://0177.0.0.1/", "127.0.0.1"),  # octal part
    ("http://017700000001/", "127.0.0.1"),  # octal whole
    ("http://127.1/", "127.0.0.1"),  # short form
    ("http://127.0.1/", "127.0.0.1"),
    ("http://0x7f.1/", "127.0.0.1"),
    ("http://127.0.0.1./", "127.0.0.1"),  # trailing dot
    ("http://１２７.０.０.１/", "127.0.0.1"),  # full-width digits, mapped by IDNA
    ("http://167772161/", "10.0.0.1"),
    ("http://0xa000001/", "10.0.0.1"),
    ("http://012.0.0.1/", "10.0.0.1"),
    ("http://10.1/", "10.0.0.1"),
    ("http://2852039166/", "169.254.169.254"),
    ("http://0xa9fea9fe/", "169.254.169.254"),
    ("http://0/", "0.0.0.0"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1"),
    ("http://[::FFFF:7f00:1]/", "::ffff:7f00:1"),
    ("http://[0:0:0:0:0:0:0:1]/", "::1"),
]


@pytest.mark.parametrize(("url", "address"), IP_SPELLINGS)
def test_ip_spellings_are_read_as_the_address_they_denote(url: str, address: str) -> None:
    parsed = parse_webhook_url(url)
    assert parsed.host == address
    assert parsed.literal_address == ip_address(address)


@pytest.mark.parametrize(("url", "address"), IP_SPELLINGS)
async def test_ip_spellings_are_refused_by_default_without_a_lookup(url: str, address: str) -> None:
    resolver = FixedResolver({})
    with pytest.raises(BlockedDestination, match="the address is"):
        await resolve_destination(url, (), resolver)
    assert resolver.calls == []  # an address, not a name: nothing to look up


@pytest.mark.parametrize(("url", "address"), IP_SPELLINGS)
async def test_ip_spellings_are_allowed_by_a_matching_network(url: str, address: str) -> None:
    allowed = nets("127.0.0.0/8", "10.0.0.0/8", "169.254.0.0/16", "0.0.0.0/32", "::1/128")
    resolver = FixedResolver({})
    destination = await resolve_destination(url, allowed, resolver)
    assert destination.address == address
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "must start with http:// or https://"),
        ("file:///etc/passwd", "must start with http:// or https://"),
        ("gopher://127.0.0.1:6379/_", "must start with http:// or https://"),
        ("javascript:alert(1)", "must start with http:// or https://"),
        ("//example.com/", "must start with http:// or https://"),
        ("example.com/hook", "must start with http:// or https://"),
        ("", "must start with http:// or https://"),
        ("http://", "has no host"),
        ("http:///path", "has no host"),
        ("http:example.com", "has no host"),
        ("http://:80/", "has no host"),
        ("http://user:pass@example.com/", "user name or password"),
        ("http://user@example.com/", "user name or password"),
        ("http://example.com@127.0.0.1/", "user name or password"),
        ("http://example.com\\@127.0.0.1/", "user name or password"),
        ("http://127.0.0.1\\.example.com/", "invalid host"),
        ("http://exa mple.com/", "spaces or control characters"),
        ("http://example.com/ hook", "spaces or control characters"),
        (" http://example.com/", "spaces or control characters"),
        ("http://example.com/\t", "spaces or control characters"),
        ("http://127.0.0.1\n.example.com/", "spaces or control characters"),
        ("http://example.com/\x00", "spaces or control characters"),
        ("http://exam\u200bple.com/", "spaces or control characters"),
        ("http://example.com\u3000/", "spaces or control characters"),
        ("http://%31%32%37.0.0.1/", "percent-encoded host"),
        ("http://1.2.3.4.5/", "looks like an IP address"),
        ("http://256.0.0.1/", "looks like an IP address"),
        ("http://08.0.0.1/", "looks like an IP address"),
        ("http://4294967296/", "looks like an IP address"),
        ("http://example.0x7f/", "looks like an IP address"),
        ("http://example.com:0/", "invalid port"),
        ("http://example.com:65536/", "invalid port"),
        ("http://example.com:http/", "invalid port"),
        ("http://example.com:-1/", "invalid port"),
        ("http://::1/", "IPv6 addresses go in brackets"),
        ("http://[::1/", "not a valid URL"),
        ("http://[fe80::1%25eth0]/", "zone identifier"),
        ("http://[v1.fe80]/", "invalid IPv6 address"),
        ("http://[127.0.0.1]/", "not a valid URL"),
        ("http://[::1]x/", "invalid host"),
        ("http://a..b/", "host name that is not valid"),
        ("http://.example.com/", "host name that is not valid"),
        ("http://exa_mple!.com/", "host name that is not valid"),
        ("http://" + "a" * 64 + ".example/", "host name that is not valid"),
    ],
)
def test_invalid_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match=message):
        parse_webhook_url(url)


def test_url_length_limit() -> None:
    base = "https://example.com/"
    longest = base + "a" * (WEBHOOK_URL_MAX_LENGTH - len(base))
    assert parse_webhook_url(longest).target == "/" + "a" * (WEBHOOK_URL_MAX_LENGTH - len(base))
    with pytest.raises(InvalidWebhookUrl, match=f"longer than {WEBHOOK_URL_MAX_LENGTH}"):
        parse_webhook_url(longest + "a")


def test_error_messages_do_not_repeat_the_path() -> None:
    # The path and query may hold a receiver's token: no message repeats them.
    for url in ("ftp://example.com/?token=s3cr3t", "http://example.com:99999/?token=s3cr3t"):
        with pytest.raises(InvalidWebhookUrl) as caught:
            parse_webhook_url(url)
        assert "s3cr3t" not in str(caught.value)


# --- resolution --------------------------------------------------------------------------


async def test_name_resolving_to_public_addresses_gives_the_first() -> None:
    resolver = FixedResolver({"hooks.example.com": ["93.184.215.14", "2606:2800:21f::1"]})
    destination = await resolve_destination("https://hooks.example.com/in?x=1", (), resolver)
    assert destination == Destination(
        scheme="https",
        host="hooks.example.com",
        port=443,
        target="/in?x=1",
        address="93.184.215.14",
    )
    assert destination.host_header == "hooks.example.com"
    assert resolver.calls == [("hooks.example.com", 443)]  # resolved once


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (["10.0.0.5"], "hooks.example.com resolves to 10.0.0.5, a private address"),
        (["127.0.0.1"], "resolves to 127.0.0.1, a loopback address"),
        (["169.254.169.254"], "resolves to 169.254.169.254, a cloud metadata address"),
        (["169.254.10.1"], "resolves to 169.254.10.1, a link-local address"),
        (["100.64.0.7"], "resolves to 100.64.0.7, a shared \\(carrier-grade NAT\\) address"),
        (["0.0.0.0"], "resolves to 0.0.0.0, an unspecified address"),
        (["224.0.0.1"], "resolves to 224.0.0.1, a multicast address"),
        (["::1"], "resolves to ::1, a loopback address"),
        (["fd00::1"], "resolves to fd00::1, a private address"),
        (["fe80::1%eth0"], "resolves to fe80::1, a link-local address"),
        (["::ffff:127.0.0.1"], "::ffff:127.0.0.1, which carries 127.0.0.1, a loopback address"),
        (["64:ff9b::a9fe:a9fe"], "which carries 169.254.169.254, a cloud metadata address"),
        (["240.0.0.1"], "resolves to 240.0.0.1, not a public address"),
        # A mix is refused, whichever comes first.
        (["93.184.215.14", "10.0.0.5"], "resolves to 10.0.0.5, a private address"),
        (["10.0.0.5", "93.184.215.14"], "resolves to 10.0.0.5, a private address"),
    ],
)
async def test_name_resolving_to_a_refused_address_is_blocked(
    answers: list[str], message: str
) -> None:
    resolver = FixedResolver({"hooks.example.com": answers})
    with pytest.raises(BlockedDestination, match=message):
        await resolve_destination("https://hooks.example.com/in", (), resolver)


async def test_mix_is_refused_even_when_one_address_is_allowed() -> None:
    resolver = FixedResolver({"hooks.internal": ["10.1.0.5", "10.2.0.5"]})
    with pytest.raises(BlockedDestination, match="10.2.0.5"):
        await resolve_destination("http://hooks.internal/", nets("10.1.0.0/16"), resolver)


async def test_allowed_network_lets_a_private_name_through() -> None:
    resolver = FixedResolver({"hooks.internal": ["10.1.0.5", "10.1.0.6", "10.1.0.5"]})
    destination = await resolve_destination(
        "http://hooks.internal:8080/x", nets("10.1.0.0/16"), resolver
    )
    assert destination.address == "10.1.0.5"
    assert destination.port == 8080
    assert resolver.calls == [("hooks.internal", 8080)]


@pytest.mark.parametrize("answers", [[], ["not-an-address"], ["10.0.0.1/8"]])
async def test_empty_or_garbled_answers_are_unresolvable(answers: list[str]) -> None:
    resolver = FixedResolver({"hooks.example.com": answers})
    with pytest.raises(UnresolvableDestination, match="hooks.example.com could not be resolved"):
        await resolve_destination("https://hooks.example.com/", (), resolver)


async def test_unknown_name_is_unresolvable() -> None:
    with pytest.raises(UnresolvableDestination, match="nowhere.invalid could not be resolved"):
        await resolve_destination("https://nowhere.invalid/", (), FixedResolver({}))


async def test_resolver_failing_with_oserror_is_unresolvable() -> None:
    async def broken(host: str, port: int) -> list[str]:
        raise OSError("resolver unreachable")

    with pytest.raises(UnresolvableDestination):
        await resolve_destination("https://hooks.example.com/", (), broken)


async def test_invalid_url_is_refused_before_any_lookup() -> None:
    resolver = FixedResolver({"example.com": ["93.184.215.14"]})
    with pytest.raises(InvalidWebhookUrl):
        await resolve_destination("http://user:pw@example.com/", (), resolver)
    assert resolver.calls == []


async def test_default_resolver_uses_the_system_resolver() -> None:
    # "localhost" is answered by /etc/hosts: no packet leaves the machine.
    answers = await default_resolver("localhost", 80)
    assert answers
    assert all(ip_address(answer).is_loopback for answer in answers)
    with pytest.raises(BlockedDestination, match="localhost resolves to"):
        await resolve_destination("http://localhost:9/", ())
    destination = await resolve_destination("http://localhost:9/", nets("127.0.0.0/8", "::1/128"))
    assert ip_address(destination.address).is_loopback


def test_networks_type_alias_accepts_both_families() -> None:
    allowed: Sequence[IPNetwork] = allowed_networks(["10.0.0.0/8", "fd00::/8"])
    assert is_allowed_address(ip_address("10.9.9.9"), allowed)
    assert is_allowed_address(ip_address("fd00::9"), allowed)
    assert not is_allowed_address(ip_address("192.168.0.1"), allowed)
