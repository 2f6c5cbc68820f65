"""The egress (SSRF) guard: which addresses HTTP-family connectors may reach.

Connector configs are written by organization admins, and webhook or redirect targets
come from remote systems, so an outbound URL is untrusted input. Left unguarded it
could reach the cloud metadata endpoint (169.254.169.254), the service's own admin
port on loopback, or anything else on the private network. The guard refuses every
address that is not publicly routable unless the operator opened an exception in
``JACKFIELD_EGRESS_ALLOWLIST``.

Hostnames are judged by what they *resolve* to (every ``getaddrinfo`` result), which
also covers the odd IPv4 spellings resolvers accept (``2130706433``, ``0x7f.1``,
``127.1``). To close the window between check and connect (DNS rebinding) the check
runs inside the transport for every request, including every redirect hop, and the
connection itself is pinned to the addresses that passed the check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2

from jackfield.kernel.errors import ConnectionFailedError, PermanentError

ALLOWLIST_ENV = "JACKFIELD_EGRESS_ALLOWLIST"
ALLOWED_SCHEMES = frozenset({"http", "https"})
REMEDIATION = "add the host to JACKFIELD_EGRESS_ALLOWLIST if it is trusted"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_METADATA = ipaddress.IPv4Address("169.254.169.254")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


_configured: EgressPolicy | None = None


def use_allowlist(allowlist: str | None) -> None:
    """Make ``allowlist`` (comma-separated, as the setting) the policy of every client
    built from now on without one of its own; ``None``: the environment's again.

    The policy is the process's, not an application's: providers build their clients
    without the application at hand. ``Jackfield`` calls this with its settings' value
    when it differs from the environment's (e.g. ``Settings(egress_allowlist=...)``).
    """
    global _configured
    _configured = None if allowlist is None else EgressPolicy(allowlist.split(","))


class EgressDeniedError(PermanentError):
    """The destination is not publicly routable and not on the allowlist."""

    code = "egress_denied"
    default_remediation = REMEDIATION


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def classify(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public destination (e.g. ``"loopback"``), or ``None``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_unspecified or ip.is_loopback:
            return "unspecified" if ip.is_unspecified else "loopback"
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = classify(inner)
            return f"{reason} (IPv4 {inner} embedded in IPv6)" if reason else None
        if ip.is_site_local:
            return "site-local"
    if ip == _METADATA:
        return "link-local (cloud metadata endpoint)"
    checks: tuple[tuple[bool, str], ...] = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT, "shared (CGNAT)"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "non-public"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _normalize_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _parse_sockaddr(sockaddr: Any) -> IPAddress:
    # IPv6 link-local results may carry a zone ("fe80::1%eth0"); the zone is irrelevant here.
    return ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])


class EgressPolicy:
    """Decides whether a URL or address may be reached.

    ``allowlist`` entries are hostnames (matched exactly, case-insensitively; every
    address they resolve to is then trusted) or IP addresses / CIDR networks (matched
    against each resolved address).
    """

    def __init__(self, allowlist: Iterable[str] = ()) -> None:
        self.hosts: frozenset[str] = frozenset()
        self.networks: tuple[IPNetwork, ...] = ()
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in allowlist:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(_normalize_host(entry))
        self.hosts = frozenset(hosts)
        self.networks = tuple(networks)

    @classmethod
    def from_env(cls) -> EgressPolicy:
        """The process's policy: the allowlist an application configured
        (``use_allowlist``), else ``JACKFIELD_EGRESS_ALLOWLIST``, read now (not at import)."""
        if _configured is not None:
            return _configured
        return cls(os.environ.get(ALLOWLIST_ENV, "").split(","))

    def host_allowlisted(self, host: str) -> bool:
        return _normalize_host(host) in self.hosts

    def address_allowlisted(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)):
            candidates.append(inner)
        return any(c in net for c in candidates for net in self.networks)

    def check_addresses(self, host: str, addresses: Iterable[IPAddress]) -> None:
        """Raise ``EgressDeniedError`` unless every address of ``host`` may be reached."""
        if self.host_allowlisted(host):
            return
        for ip in addresses:
            reason = None if self.address_allowlisted(ip) else classify(ip)
            if reason is None:
                continue
            if _literal_ip(host) == ip:
                message = f"egress to {host} refused: {ip} is a {reason} address"
            else:
                message = f"egress to {host} refused: it resolves to {ip}, a {reason} address"
            raise EgressDeniedError(message, details={"host": host, "reason": reason})

    def _target(self, url: httpx2.URL | str) -> tuple[str, int]:
        parsed = url if isinstance(url, httpx2.URL) else httpx2.URL(url)
        if parsed.scheme not in ALLOWED_SCHEMES:
            raise EgressDeniedError(
                f"egress to {parsed.host or parsed} refused: scheme {parsed.scheme!r} is not "
                "allowed (only http and https)",
                remediation="Use an http:// or https:// URL.",
            )
        host = parsed.raw_host.decode("ascii")
        if not host:
            raise EgressDeniedError("egress refused: the URL has no host")
        return host, parsed.port or (443 if parsed.scheme == "https" else 80)

    async def resolve(self, host: str, port: int, timeout: float | None = None) -> list[IPAddress]:
        """Every address ``host`` resolves to (a literal IP resolves to itself)."""
        literal = _literal_ip(host)
        if literal is not None:
            return [literal]
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise ConnectionFailedError(f"timed out resolving host {host}") from None
        except OSError as exc:
            raise ConnectionFailedError(f"cannot resolve host {host}: {exc.strerror}") from exc
        return _unique(_parse_sockaddr(info[4]) for info in infos)

    async def check_host(
        self, host: str, port: int, timeout: float | None = None
    ) -> list[IPAddress]:
        """Resolve ``host`` and check every result; returns the addresses to connect to."""
        addresses = await self.resolve(host, port, timeout)
        self.check_addresses(host, addresses)
        return addresses

    async def check(self, url: httpx2.URL | str, timeout: float | None = None) -> list[IPAddress]:
        """Check ``url`` (scheme, then every resolved address); returns the addresses."""
        host, port = self._target(url)
        return await self.check_host(host, port, timeout)

    def check_url(self, url: httpx2.URL | str) -> list[IPAddress]:
        """Synchronous ``check``; resolves with a blocking ``getaddrinfo`` (no connection)."""
        host, port = self._target(url)
        literal = _literal_ip(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise ConnectionFailedError(f"cannot resolve host {host}: {exc.strerror}") from exc
            addresses = _unique(_parse_sockaddr(info[4]) for info in infos)
        self.check_addresses(host, addresses)
        return addresses


def _unique(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    return list(dict.fromkeys(addresses))


class _GuardedNetworkBackend(httpcore2.AsyncNetworkBackend):
    """Resolves and checks at connect time, then connects only to the checked addresses.

    Connecting to the vetted IP (rather than letting the socket layer resolve the name
    again) is what pins the connection; TLS still verifies the certificate against the
    original hostname, which httpcore passes to ``start_tls`` separately.
    """

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore2.AsyncNetworkStream:
        addresses = await self._policy.check_host(host, port, timeout)
        last_error: Exception | None = None
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None  # resolve() never returns an empty list
        raise last_error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore2.AsyncNetworkStream:
        raise EgressDeniedError("egress over unix sockets is not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class EgressGuardTransport(httpx2.AsyncHTTPTransport):
    """An ``AsyncHTTPTransport`` that refuses denied destinations on every request.

    The client follows redirects by sending each hop through its transport, so every hop
    is checked here again. Environment proxies are not supported: a proxy would connect
    on our behalf and make the address check meaningless.
    """

    def __init__(
        self,
        policy: EgressPolicy | None = None,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx2.Limits | None = None,
        retries: int = 0,
    ) -> None:
        limits = limits or httpx2.Limits(max_connections=100, max_keepalive_connections=20)
        ssl_context = httpx2.create_ssl_context(verify=verify, trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False, limits=limits, retries=retries)
        self.policy = policy if policy is not None else EgressPolicy.from_env()
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            retries=retries,
            network_backend=_GuardedNetworkBackend(self.policy),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout = request.extensions.get("timeout", {}).get("connect")
        await self.policy.check(request.url, timeout)
        return await super().handle_async_request(request)
