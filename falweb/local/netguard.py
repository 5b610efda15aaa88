"""Outbound HTTP that reaches public addresses only: webhook deliveries and input fetches.

A caller names the URL, so the runtime must not become their way into this machine or its
network (loopback, private, link-local, the cloud metadata address...). Checking the name
first and connecting afterwards is not enough: a resolver that answers a public address to
the check and ``127.0.0.1`` to the connection ("DNS rebinding") walks through. Here the
connection itself resolves the name once, checks every address it got, and connects to
those checked addresses only; the ``Host`` header, TLS SNI and certificate check still use
the name. Environment proxies are ignored (a proxy would resolve the name itself).
"""

import ipaddress
import socket
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util import connection as urllib3_connection

#: IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64's well-known one).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

REFUSED = "a private or local address (loopback, private network, link-local...)"


class AddressRefused(Exception):
    """The URL's host is, or resolves to, an address that is not public."""


def is_public(address):
    """True when ``address`` (an IP string or object) is globally reachable, including the
    IPv4 address that IPv4-mapped, 6to4 and NAT64 IPv6 addresses embed."""
    ip = ipaddress.ip_address(str(address).split("%")[0])
    if not ip.is_global:
        return False
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not embedded.is_global:
            return False
    return True


def resolve_public(host, port):
    """Resolve ``host`` once: the (family, address) pairs to connect to, every one public.

    :class:`AddressRefused` when any address is not public (a name that resolves to one
    private address among public ones is refused whole); ``socket.gaierror`` when the name
    does not resolve.
    """
    host = host.strip("[]")
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    addresses = []
    for family, _, _, _, sockaddr in infos:
        address = sockaddr[0]
        if not is_public(address):
            raise AddressRefused(f"{host} is {REFUSED}" if address == host
                                 else f"{host} resolves to {address}, {REFUSED}")
        if (family, address) not in addresses:
            addresses.append((family, address))
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{host}: no address")
    return addresses


def check_url(url):
    """Refuse (:class:`AddressRefused`) a URL whose host is a non-public IP, in any spelling
    the resolver accepts (``127.1``, ``0x7f000001``, ``[::1]``), or a name that resolves to
    one. A name that does not resolve now passes: the connection checks again anyway."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise AddressRefused("the URL's port is not a number") from None
    if not parts.hostname:
        raise AddressRefused("the URL has no host")
    try:
        resolve_public(parts.hostname, port)
    except (socket.gaierror, UnicodeError):
        pass
    except ValueError:  # a NUL in the name, say
        raise AddressRefused("the URL's host is not a host name") from None


def refusal(exc):
    """The :class:`AddressRefused` behind a ``requests`` exception, or None."""
    seen = set()
    stack = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, AddressRefused):
            return item
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None)])
        stack.extend(arg for arg in getattr(item, "args", ()) if isinstance(arg, BaseException))
    return None


class _Refused(NewConnectionError):
    pass


class _PinnedMixin:
    def _new_conn(self):
        try:
            addresses = resolve_public(self._dns_host, self.port)
        except AddressRefused as exc:
            raise _Refused(self, str(exc)) from exc
        except (socket.gaierror, UnicodeError) as exc:
            raise NewConnectionError(self, f"Failed to resolve {self.host}: {exc}") from exc
        error = None
        for _, address in addresses:
            try:
                # An IP literal: create_connection's own lookup only parses it.
                return urllib3_connection.create_connection(
                    (address, self.port), self.timeout, source_address=self.source_address,
                    socket_options=self.socket_options)
            except OSError as exc:
                error = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")


class PinnedHTTPConnection(_PinnedMixin, HTTPConnection):
    """An HTTP connection to the public addresses its host resolved to, resolved once."""


class PinnedHTTPSConnection(_PinnedMixin, HTTPSConnection):
    """As :class:`PinnedHTTPConnection`; TLS still checks the certificate of the name."""


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = PinnedHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    """A transport adapter whose connections reach public addresses only, never a proxy."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PinnedHTTPPool,
                                                   "https": _PinnedHTTPSPool}

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        raise AddressRefused("proxies are not used for calls to caller-named URLs")


def public_session():
    """A ``requests.Session`` that connects to public addresses only (close it when done)."""
    session = requests.Session()
    session.trust_env = False  # no environment proxies: the check must see the real peer
    adapter = PublicOnlyAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
