"""Where a webhook may be sent (spec api-v2 section 9: no server-side request forgery).

A webhook URL is parsed strictly (`parse_webhook_url`), its host is resolved once
(`resolve_destination`), and every address it resolves to must be allowed
(`is_allowed_address`): a global address, or one inside `WEBHOOK_ALLOWED_NETWORKS`. The
sender then connects to exactly the address returned here, so a name that answers a public
address when the URL is saved and a private one when it is delivered (DNS rebinding) is
judged on the address actually connected to.

IP spellings that libc and browsers accept as addresses (`2130706433`, `0x7f000001`,
`0177.0.0.1`, `127.1`) are read as the address they denote and checked like any other, so
they cannot pass as names. IPv6 addresses that carry an IPv4 address (IPv4-mapped, IPv4-
compatible, 6to4, NAT64) are judged by the IPv4 address they carry.

The messages of `BlockedDestination`, `UnresolvableDestination` and `InvalidWebhookUrl` are
safe to show to the webhook's owner: they never repeat more of the URL than its host.
"""

from __future__ import annotations

import asyncio
import socket
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from urllib.parse import quote, urlsplit

from app.core.bounds import WEBHOOK_URL_MAX_LENGTH

__all__ = [
    "BlockedDestination",
    "Destination",
    "InvalidWebhookUrl",
    "IPAddress",
    "IPNetwork",
    "Resolver",
    "UnresolvableDestination",
    "WebhookUrl",
    "allowed_networks",
    "default_resolver",
    "is_allowed_address",
    "parse_webhook_url",
    "resolve_destination",
]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
# (host, port) -> the addresses the host resolves to, as strings ("192.0.2.1", "2001:db8::1").
Resolver = Callable[[str, int], Awaitable[list[str]]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Host names after IDNA: letters, digits, hyphens, dots; underscores occur in real DNS names.
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
_HEX_DIGITS = frozenset("0123456789abcdef")
_CGNAT = IPv4Network("100.64.0.0/10")
# Not global, though Python 3.11 calls them so (later versions follow the IANA registry):
# IETF protocol assignments, whose anycast .9 and .10 are no webhook receivers either, and
# the deprecated 6to4 relay anycast (RFC 7526).
_NOT_GLOBAL_IPV4 = (IPv4Network("192.0.0.0/24"), IPv4Network("192.88.99.0/24"))
# Not global, though Python 3.11 calls them so: site-local (deprecated, RFC 3879) and the
# documentation prefix of RFC 9637.
_NOT_GLOBAL_IPV6 = (IPv6Network("fec0::/10"), IPv6Network("3fff::/20"))
_METADATA = IPv4Address("169.254.169.254")
# NAT64 prefixes (RFC 6052 well-known, RFC 8215 local use): the low 32 bits are an IPv4 address.
_NAT64 = (IPv6Network("64:ff9b::/96"), IPv6Network("64:ff9b:1::/48"))


class InvalidWebhookUrl(ValueError):
    """The URL is not one a webhook may have (not http(s), userinfo, bad host, too long, ...)."""


class BlockedDestination(ValueError):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


class UnresolvableDestination(ValueError):
    """The URL's host name does not resolve (a failed attempt at send time, a 422 at save)."""


@dataclass(frozen=True)
class WebhookUrl:
    """A parsed webhook URL: what to connect to and what to send in the request line."""

    scheme: str  # "http" or "https"
    host: str  # lower-case ASCII (IDNA) name, or an IP address (IPv6 without brackets)
    port: int
    target: str  # path and query, at least "/"; no fragment

    @property
    def host_header(self) -> str:
        """The Host header for this URL: IPv6 in brackets, the port unless it is the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    @property
    def literal_address(self) -> IPAddress | None:
        """The address when the host is an IP address, else None (a name to resolve)."""
        try:
            return ip_address(self.host)
        except ValueError:
            return None


@dataclass(frozen=True)
class Destination(WebhookUrl):
    """A webhook URL with the one address, already checked, that the sender must connect to."""

    address: str


def _invalid(reason: str) -> InvalidWebhookUrl:
    return InvalidWebhookUrl(f"The webhook URL {reason}.")


def _has_forbidden_character(url: str) -> bool:
    # Whitespace and control characters are where parsers disagree (and glibc's inet_aton
    # ignores everything after a space): refuse them rather than guess.
    return any(
        character.isspace() or unicodedata.category(character).startswith("C") for character in url
    )


def _ends_in_a_number(host: str) -> bool:
    # WHATWG URL "ends in a number": such a host is an IPv4 address or not a valid host.
    last = host.rsplit(".", 1)[-1]
    if last.isdigit():
        return True
    return last[:2] == "0x" and all(character in _HEX_DIGITS for character in last[2:])


def _ipv4_spelling(host: str) -> IPv4Address | None:
    """The address a numeric host denotes in any spelling libc accepts, or None for a name."""
    bare = host[:-1] if host.endswith(".") else host
    if not bare or not _ends_in_a_number(bare):
        return None
    try:
        # inet_aton accepts decimal, hex and octal parts and short forms: what libc and
        # browsers would connect to.
        packed = socket.inet_aton(bare)
    except OSError:
        raise _invalid("has a host that looks like an IP address but is not one") from None
    return IPv4Address(packed)


def _parse_host(raw: str) -> str:
    """The host of an authority, canonical: an IP address in its usual form, or an ASCII name."""
    if raw.startswith("["):
        inner = raw[1:-1] if raw.endswith("]") else ""
        if "%" in inner:
            raise _invalid("has an IPv6 zone identifier, which webhooks cannot use")
        try:
            return str(IPv6Address(inner))
        except ValueError:
            raise _invalid("has an invalid IPv6 address") from None
    if not raw:
        raise _invalid("has no host")
    if "%" in raw:
        # Browsers percent-decode hosts ("%31%32%37.0.0.1" is 127.0.0.1); refuse instead.
        raise _invalid("has a percent-encoded host")
    try:
        # IDNA with nameprep also maps full-width digits and dots to ASCII, so it runs before
        # the address check ("１２７.0.0.1" is 127.0.0.1).
        host = raw.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise _invalid("has a host name that is not valid") from None
    if not host or any(character not in _NAME_CHARACTERS for character in host):
        raise _invalid("has a host name that is not valid")
    address = _ipv4_spelling(host)
    if address is not None:
        return str(address)
    if ".." in host or host.startswith("."):
        raise _invalid("has a host name that is not valid")
    return host


def _split_authority(netloc: str) -> tuple[str, str | None]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise _invalid("has an invalid IPv6 address")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _invalid("has an invalid host")
        return host, rest[1:] if rest else None
    host, colon, port = netloc.partition(":")
    if ":" in port:
        raise _invalid("has an invalid host (IPv6 addresses go in brackets)")
    return host, port if colon else None


def _parse_port(raw: str | None, scheme: str) -> int:
    if not raw:  # "http://host:/" means the default port, as in browsers
        return _DEFAULT_PORTS[scheme]
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 65536:
        raise _invalid("has an invalid port")
    return int(raw)


def parse_webhook_url(url: str) -> WebhookUrl:
    """Parse and check a webhook URL; raise InvalidWebhookUrl for one webhooks may not have."""
    if len(url) > WEBHOOK_URL_MAX_LENGTH:
        raise _invalid(f"is longer than {WEBHOOK_URL_MAX_LENGTH} characters")
    if _has_forbidden_character(url):
        raise _invalid("contains spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _invalid("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _invalid("must start with http:// or https://")
    netloc = parts.netloc
    if not netloc:
        raise _invalid("has no host")
    if "@" in netloc:
        raise _invalid("must not contain a user name or password")
    if "\\" in netloc:
        raise _invalid("has an invalid host")
    raw_host, raw_port = _split_authority(netloc)
    host = _parse_host(raw_host)
    port = _parse_port(raw_port, scheme)
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    # The request line is ASCII: percent-encode anything else, leave existing escapes alone.
    target = quote(target, safe="".join(chr(code) for code in range(0x21, 0x7F)))
    return WebhookUrl(scheme=scheme, host=host, port=port, target=target)


def _carried_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries, for those a network delivers to it."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in prefix for prefix in _NAT64):
        return IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # IPv4-compatible ::a.b.c.d
        return IPv4Address(int(address))
    return None


def _judged(address: IPAddress) -> IPAddress:
    if isinstance(address, IPv6Address):
        carried = _carried_ipv4(address)
        if carried is not None:
            return carried
    return address


def _in_any(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def _is_public(address: IPAddress) -> bool:
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
        and not address.is_loopback
        and not address.is_link_local
        and not (isinstance(address, IPv4Address) and address in _CGNAT)
        and not any(address in network for network in (*_NOT_GLOBAL_IPV4, *_NOT_GLOBAL_IPV6))
    )


def is_allowed_address(address: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    """Whether webhooks may connect to `address`: public, or inside an allowed network.

    An IPv6 address carrying an IPv4 address is judged by the IPv4 address.
    """
    if _in_any(address, allowed):
        return True
    judged = _judged(address)
    return _in_any(judged, allowed) or _is_public(judged)


def _address_kind(address: IPAddress) -> str:
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address == _METADATA:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, IPv4Address) and address in _CGNAT:
        return "a shared (carrier-grade NAT) address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private and not address.is_reserved:
        return "a private address"
    return "not a public address"


def _describe(address: IPAddress) -> str:
    """The address and why it is refused, e.g. "10.0.0.5, a private address"."""
    judged = _judged(address)
    if judged is address:
        return f"{address}, {_address_kind(address)}"
    # Python 3.11 writes ::ffff:10.0.0.1 as ::ffff:a00:1; show the address people recognise.
    shown = (
        f"::ffff:{judged}" if isinstance(address, IPv6Address) and address.ipv4_mapped else address
    )
    return f"{shown}, which carries {judged}, {_address_kind(judged)}"


def allowed_networks(settings_values: Sequence[str]) -> tuple[IPNetwork, ...]:
    """The networks of WEBHOOK_ALLOWED_NETWORKS (CIDRs; host bits are ignored, as in Settings)."""
    return tuple(ip_network(value.strip(), strict=False) for value in settings_values)


async def default_resolver(host: str, port: int) -> list[str]:
    """Resolve with the system resolver, on the event loop's executor (never blocks the loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    try:
        answers = await resolver(host, port)
    except (OSError, UnicodeError):  # socket.gaierror is an OSError
        raise UnresolvableDestination(f"{host} could not be resolved") from None
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            # getaddrinfo writes link-local IPv6 with a zone ("fe80::1%eth0"); drop it.
            address = ip_address(answer.split("%", 1)[0])
        except ValueError:
            raise UnresolvableDestination(f"{host} could not be resolved") from None
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnresolvableDestination(f"{host} could not be resolved")
    return addresses


async def resolve_destination(
    url: str,
    allowed: Sequence[IPNetwork],
    resolver: Resolver | None = None,
) -> Destination:
    """Parse `url`, resolve its host once and check every address; return the one to use.

    Raises InvalidWebhookUrl, UnresolvableDestination, or BlockedDestination when any
    address is not allowed (a name resolving to public and private addresses is refused).
    """
    parsed = parse_webhook_url(url)
    literal = parsed.literal_address
    if literal is not None:
        if not is_allowed_address(literal, allowed):
            raise BlockedDestination(f"the address is {_describe(literal)}")
        addresses: list[IPAddress] = [literal]
    else:
        addresses = await _resolve(parsed.host, parsed.port, resolver or default_resolver)
        for address in addresses:
            if not is_allowed_address(address, allowed):
                raise BlockedDestination(f"{parsed.host} resolves to {_describe(address)}")
    return Destination(
        scheme=parsed.scheme,
        host=parsed.host,
        port=parsed.port,
        target=parsed.target,
        address=str(addresses[0]),
    )
