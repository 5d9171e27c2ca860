"""Which client addresses may connect to a server without authentication (Modbus TCP).

An `AccessList` is a set of IP networks written as `CIDR[,CIDR…]` (`192.168.1.0/24`,
`10.0.0.7`, `fd00::/8`). IPv4 clients reaching an IPv6 socket (`::ffff:192.168.1.5`) are
matched as IPv4. The default admits loopback, private (RFC 1918, unique local IPv6) and
link-local addresses: the networks a wallbox controller lives on, never the internet.

Pure: no sockets, no logging.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

LOCAL_NETWORKS = (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
    "::1/128", "fc00::/7", "fe80::/10",
)


def _network(text: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not an IP network (CIDR such as "
                         "192.168.1.0/24)") from None


def client_address(host: str) -> Address | None:
    """The address of a peer as the socket names it; None if it is not an IP address."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class AccessList:
    """The networks whose clients may connect."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    @classmethod
    def parse(cls, text: str) -> AccessList:
        """`CIDR[,CIDR…]`; raises ValueError naming the part that is not a network."""
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise ValueError("no network given (CIDR[,CIDR…], e.g. 192.168.1.0/24)")
        return cls(_network(p) for p in parts)

    @classmethod
    def local(cls) -> AccessList:
        """Loopback, private and link-local networks (the default)."""
        return cls(_network(n) for n in LOCAL_NETWORKS)

    def allows(self, host: str) -> bool:
        addr = client_address(host)
        return addr is not None and any(addr in net for net in self.networks)

    def reaches_public(self) -> bool:
        """True if some allowed network holds addresses outside the local ones."""
        local = AccessList.local().networks
        return not all(
            any(net.version == loc.version and net.subnet_of(loc)  # type: ignore[arg-type]
                for loc in local)
            for net in self.networks
        )

    def describe(self) -> str:
        """The networks for people: the default by its name."""
        if self == AccessList.local():
            return "loopback, private and link-local networks"
        return str(self)

    def __str__(self) -> str:
        return ",".join(str(n) for n in self.networks)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AccessList) and self.networks == other.networks

    def __hash__(self) -> int:
        return hash(self.networks)
