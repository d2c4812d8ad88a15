"""Host and port, as settings, MQTT and the web page spell them; addresses told without their passwords."""

import re
from typing import Optional, Tuple


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


# A URL's user:password@ (libpq ends the user part at the first @ before any /), and a
# password=VALUE in a URL's query or a key=value connection string, quoted or not.
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*):[^/@\s]*@")
_KEY_PASSWORD = re.compile(r"(password\s*=\s*)('(?:\\.|[^'\\])*'|[^\s&]+)", re.IGNORECASE)
MASK = "***"


def without_password(text: str) -> str:
    """`text` with every database password in it replaced by ***: a database address, or a
    message that quotes one, can then be logged, printed or answered to anyone."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    return _KEY_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
