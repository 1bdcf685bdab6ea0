"""HTTP requests to addresses partners give us (webhooks), kept off our own network.

A webhook URL is chosen by a partner, so without care it could point at anything our
servers can reach and the partner cannot: the database, Redis, the cloud's metadata
service (169.254.169.254), an admin port on localhost (server-side request forgery).
Every host is therefore resolved, and refused when any of its addresses is not a public
unicast address: loopback, private, link-local, multicast, reserved, unspecified, shared
(100.64/10) and the like, in IPv4 and IPv6, including IPv4 addresses written inside IPv6
ones (``::ffff:127.0.0.1``, NAT64 ``64:ff9b::/96``, 6to4) and every spelling the resolver
accepts (``2130706433``, ``0x7f.1``). A host refused once is refused whatever else it also
resolves to.

This is checked when an endpoint is registered and again right before each send, and the
request then connects to the very address that was checked (the URL's host name still
goes in the ``Host`` header and TLS verification), so a name that resolves somewhere
public at the check and to 127.0.0.1 a moment later (DNS rebinding) gains nothing.

Any port is allowed: what is dangerous is the address, and receivers do run on 8443 and
the like; a public host's open ports are open to the partner anyway. No proxy from the
environment is used (it would connect to the host itself, unchecked).

``WEBHOOK_ALLOW_PRIVATE_HOSTS`` turns the address check off, for development and for tests
with a receiver on 127.0.0.1; never in production (``check --deploy`` says so).
"""

import base64
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import certifi
import urllib3
from django.conf import settings
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from journey.errors import ApplicationError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes whose last 32 bits are an IPv4 address that the packet really goes to.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Read this much of a receiver's answer, for the attempt log; the rest is not read.
MAX_EXCERPT_BYTES = 2048


class SendError(Exception):
    """A request that could not be made or had no answer; ``str()`` says why, for staff.

    ``permanent`` errors will not get better by retrying."""

    permanent = False


class ForbiddenDestination(SendError):
    permanent = True


def _getaddrinfo(host: str, port: int) -> list[tuple[Any, ...]]:
    # One place to resolve, so tests can answer for names without a network.
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to, in the resolver's order; SendError if none."""
    try:
        infos = _getaddrinfo(host, port)
    except (OSError, UnicodeError) as error:
        raise SendError(f"DNS: could not resolve {host}: {error}") from error
    addresses: list[Address] = []
    for info in infos:
        # A link-local IPv6 address may carry its interface ("fe80::1%eth0").
        address = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise SendError(f"DNS: {host} has no address")
    return addresses


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def why_forbidden(address: Address) -> str | None:
    """Why a webhook may not go to ``address`` ("loopback", "private", ...), or None."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        reason = why_forbidden(inner)
        if reason is not None or address.ipv4_mapped is not None or address in NAT64:
            # These reach the IPv4 address itself: it alone decides.
            return reason
    for reason, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("site-local", getattr(address, "is_site_local", False)),
        ("non-public", not address.is_global),
    ):
        if flag:
            return reason
    return None


@dataclass(frozen=True)
class Destination:
    """A URL resolved and checked: where to connect, and what to say when there."""

    scheme: str
    hostname: str
    port: int
    addresses: tuple[Address, ...]
    target: str  # path and query
    host_header: str
    authorization: str | None


def _split(url: str) -> tuple[Any, str, int]:
    """The URL's parts, its host name in ASCII (IDNA) and its port."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in {"http", "https"}:
        raise ApplicationError(
            "A webhook URL must be an http(s) URL.", fields={"url": ["http(s) only."]}
        )
    try:
        port = parts.port
        if port == 0:  # urlsplit reads ":0" as a port; it is none (it was sent to 80)
            raise ValueError(port)
    except ValueError:
        raise ApplicationError(
            "The webhook URL's port is not a port (1 to 65535).",
            fields={"url": ["Port out of range."]},
        ) from None
    try:
        hostname = (parts.hostname or "").encode("idna").decode("ascii")
    except UnicodeError:
        hostname = ""
    if not hostname:
        raise ApplicationError("The webhook URL has no host name.", fields={"url": ["No host."]})
    return parts, hostname, port or (443 if parts.scheme == "https" else 80)


def _refuse(hostname: str, addresses: list[Address]) -> None:
    if settings.WEBHOOK_ALLOW_PRIVATE_HOSTS:
        return
    for address in addresses:
        reason = why_forbidden(address)
        if reason is not None:
            shown = hostname if hostname == str(address) else f"{hostname} ({address})"
            article = "an" if reason[0] in "aeiou" else "a"
            raise ForbiddenDestination(
                f"Refused: {shown} is {article} {reason} address; webhooks go to public "
                "addresses only."
            )


def check_url(url: str) -> None:
    """For registering an endpoint: ApplicationError (naming the ``url`` field) for a URL
    that is not http(s) or whose host resolves to an address we refuse. A host that does
    not resolve (yet) is accepted: it is resolved and checked again before every send."""
    _parts, hostname, port = _split(url)
    try:
        addresses = resolve(hostname, port)
    except SendError:
        return
    try:
        _refuse(hostname, addresses)
    except ForbiddenDestination as error:
        message = str(error).removeprefix("Refused: ")
        raise ApplicationError(
            f"This webhook URL cannot be used: {message}", fields={"url": [message]}
        ) from error


def destination(url: str) -> Destination:
    """Resolve and check ``url`` now, right before sending. SendError when the host does
    not resolve (worth retrying); ForbiddenDestination when it resolves somewhere we
    refuse (not worth retrying); ApplicationError for a URL that is not http(s)."""
    parts, hostname, port = _split(url)
    addresses = resolve(hostname, port)
    _refuse(hostname, addresses)
    default_port = 443 if parts.scheme == "https" else 80
    shown_host = f"[{hostname}]" if ":" in hostname else hostname
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Destination(
        scheme=parts.scheme,
        hostname=hostname,
        port=port,
        addresses=tuple(addresses),
        target=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        host_header=shown_host if port == default_port else f"{shown_host}:{port}",
        authorization=authorization,
    )


def _pool(to: Destination, address: Address, timeout: tuple[float, float]) -> Any:
    options: dict[str, Any] = {
        "host": str(address),
        "port": to.port,
        "timeout": urllib3.Timeout(connect=timeout[0], read=timeout[1]),
        "retries": False,
        "maxsize": 1,
    }
    if to.scheme == "http":
        return urllib3.HTTPConnectionPool(**options)
    return urllib3.HTTPSConnectionPool(
        **options,
        # Connected to the address, but TLS is about the name: SNI and the certificate.
        server_hostname=to.hostname,
        assert_hostname=to.hostname,
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where(),
    )


def _describe(error: HTTPError) -> str:
    kind = (
        "ReadTimeout"
        if isinstance(error, ReadTimeoutError)
        else "ConnectionError"
        if isinstance(error, (NewConnectionError, ProtocolError))
        else "ConnectTimeout"
        if isinstance(error, ConnectTimeoutError)
        else "SSLError"
        if isinstance(error, SSLError)
        else type(error).__name__
    )
    return f"{kind}: {error}"


def post(
    to: Destination, *, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]
) -> tuple[int, str]:
    """POST ``body`` to the checked addresses, the next one only if one cannot be
    connected to; no redirects followed. Returns the status and the start of the answer."""
    headers = {**headers, "host": to.host_header}
    if to.authorization:
        headers["authorization"] = to.authorization
    failure = SendError(f"ConnectionError: no address for {to.hostname}")
    for address in to.addresses:
        with _pool(to, address, timeout) as pool:
            try:
                response = pool.urlopen(
                    "POST",
                    to.target,
                    body=body,
                    headers=headers,
                    redirect=False,
                    retries=False,
                    preload_content=False,
                    assert_same_host=False,
                )
                try:
                    excerpt = response.read(MAX_EXCERPT_BYTES)
                finally:
                    response.release_conn()
            except ConnectTimeoutError as error:  # NewConnectionError too: nothing was sent
                failure = SendError(_describe(error))
                continue
            except HTTPError as error:
                raise SendError(_describe(error)) from error
            return response.status, excerpt.decode("utf-8", errors="replace")
    raise failure
