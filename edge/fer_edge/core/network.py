"""Host and port, as settings, MQTT and the web page spell them; database addresses told without
their passwords; the client behind a trusted proxy."""

import ipaddress
import re
from typing import List, Optional, Sequence, Tuple, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def split_host_port(value: str, default_port: Optional[int]) -> Tuple[str, int]:
    """'host', 'host:port', '[v6]:port' or a bare IPv6 address -> (host, port); ValueError if not."""
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("expected [ADDRESS]:PORT")
        port_text = rest[1:]
    elif value.count(":") > 1:  # a bare IPv6 address: no port
        host, port_text = value, ""
    else:
        host, _, port_text = value.partition(":")
    if not host.strip():
        raise ValueError("expected a host name or address")
    if not port_text:
        if default_port is None:
            raise ValueError("expected HOST:PORT")
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number in 1..65535")
    return host, int(port_text)


# A URL's user:password@ up to the last @ before the host (an @ or / in the password is wrong,
# but masked all the same), and a password=VALUE in a URL's query or a key=value connection
# string, quoted or not.
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*):\S*?@(?=[^@\s/?]*(?:[/?\s]|$))")
_KEY_PASSWORD = re.compile(r"(password\s*=\s*)('(?:\\.|[^'\\])*'|[^\s&]+)", re.IGNORECASE)
MASK = "***"


def without_password(text: str) -> str:
    """`text` with every database password in it replaced by ***: a database address, or a
    message that quotes one, can then be logged, printed or answered to anyone."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    return _KEY_PASSWORD.sub(lambda m: m.group(1) + MASK, text)


def parse_networks(text: str) -> List[Network]:
    """'127.0.0.1, 10.0.0.0/8, ::1' -> the networks (an address is a network of one); ValueError if not."""
    networks = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or network (such as 10.0.0.0/8)") from None
    return networks


def within(address: str, networks: Sequence[Network]) -> bool:
    """Whether `address` (an IP address as text) lies in one of `networks`."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str, forwarded_for: Optional[str], proxies: Sequence[Network]) -> str:
    """Who a request is from: the connection's peer, or where the peer is a trusted proxy, the
    nearest address in X-Forwarded-For that is not a trusted proxy (read from the right: the
    left part is whatever the client wrote). From any other peer the header is ignored."""
    if not forwarded_for or not within(peer, proxies):
        return peer
    client = peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop.split("%")[0])
        except ValueError:
            return client   # a hop that is not an address: the last one known stands
        client = hop
        if not within(hop, proxies):
            break
    return client
