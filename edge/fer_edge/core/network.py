"""The services fer-edge talks to: host and port, as settings, MQTT and the web page spell
them; database addresses told without their passwords; the client behind a trusted proxy;
and the passwords for the broker and the database, read from a file, systemd's credentials
or the environment, never from the command line."""

import ipaddress
import os
import re
from typing import List, Mapping, Optional, Sequence, Tuple, Union

from .errors import UserError

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


def read_password(password_file: Optional[str] = None, environ: Optional[Mapping[str, str]] = None, credential: str = "mqtt-password",
                  variable: str = "FER_EDGE_MQTT_PASSWORD", what: str = "MQTT password") -> Optional[str]:
    """A password (the MQTT broker's by default): from a file, $FER_EDGE_MQTT_PASSWORD, or
    systemd's $CREDENTIALS_DIRECTORY/mqtt-password (LoadCredential=). Never from the command line."""
    environ = os.environ if environ is None else environ
    candidates = [password_file] if password_file else []
    if environ.get("CREDENTIALS_DIRECTORY"):
        candidates.append(os.path.join(environ["CREDENTIALS_DIRECTORY"], credential))
    for path in candidates:
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            try:
                password = data.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise UserError(f"{path}: the {what} file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            if password:  # an empty credential is systemd's fallback: no password
                return password
            if path == password_file:   # a file the user named holds nothing: not "not found"
                raise UserError(f"{password_file}: the {what} file is empty")
    if password_file:
        raise OSError(f"{password_file}: {what} file not found")
    return environ.get(variable)


def read_db_password(password_file: Optional[str] = None) -> Optional[str]:
    """The database's password: --db-password-file, LoadCredential=db-password or $PGPASSWORD
    (else none: the driver reads ~/.pgpass)."""
    return read_password(password_file, credential="db-password", variable="PGPASSWORD", what="database password")
