"""Who may ask a page of fer-edge: loopback without a token (and no foreign Host: DNS
rebinding), anyone with the token beyond it. A token must be long and random enough not to
be guessed, and wrong ones from one address are counted. No web framework here: the rules
are plain functions the server's guards call.
"""

import ipaddress
import math
import os
import socket
import stat
import time
from collections import defaultdict, deque
from typing import Deque, Dict, Mapping, Optional

from ..core.errors import UserError
from ..core.log import Say, unprintable

MIN_TOKEN_CHARS = 16         # a shorter token can be guessed
MIN_TOKEN_DISTINCT = 5       # a token of fewer different characters (aaaa..., abab...) can be guessed
MIN_TOKEN_BITS = 30.0        # its characters' spread over the token: a random 16-hex token has more
FAILED_TOKENS_PER_MINUTE = 10  # wrong tokens from one address beyond this get 429 for the rest of the minute


class WebError(UserError):
    pass


LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback_name(host: str) -> bool:
    """A Host header naming this machine's loopback: without a DNS lookup (rebinding)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one (127.0.0.0/8, ::1)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)
    except (OSError, ValueError):
        return False


class FailedTokens:
    """Wrong tokens per client address over the last minute: brute force is answered with 429."""

    def __init__(self, limit: int = FAILED_TOKENS_PER_MINUTE):
        self.limit = limit
        self.failures: Dict[str, Deque[float]] = defaultdict(deque)

    def _recent(self, address: str) -> Deque[float]:
        times, now = self.failures[address], time.monotonic()
        while times and now - times[0] > 60.0:
            times.popleft()
        if not times:
            self.failures.pop(address, None)
        return times

    def blocked(self, address: str) -> bool:
        return len(self._recent(address)) >= self.limit

    def failed(self, address: str) -> None:
        self.failures[address].append(time.monotonic())


def token_bits(token: str) -> float:
    """The token's length times the entropy of its characters' frequencies: 0 for one repeated
    character, about 4 bits a character for random hex."""
    counts = [token.count(c) for c in set(token)]
    return -sum(n * math.log2(n / len(token)) for n in counts)


def is_a_run(token: str) -> bool:
    """abcdef..., 0123456789abcdef0123..., zyxw...: at most two different steps between
    neighbours, or one step between three neighbours in four."""
    steps = [ord(b) - ord(a) for a, b in zip(token, token[1:])]
    return len(set(steps)) <= 2 or max(steps.count(step) for step in set(steps)) * 4 >= len(steps) * 3


def is_repeated(token: str) -> bool:
    """qwertyqwertyqwerty: a short part said again and again."""
    return (token + token).find(token, 1) < len(token)


def unsendable(token: str) -> bool:
    """A space, line break or control character: a header cannot carry it as typed (a second
    line in the file is a note or another token, not part of this one)."""
    return any(char.isspace() or unprintable(char) for char in token)



def check_token(token: Optional[str], token_file: Optional[str] = None, say: Say = lambda message: None) -> None:
    """A token must be long enough and random enough not to be guessed; its file should be private."""
    example = "(for example: openssl rand -hex 16 > FILE)"
    if token and len(token) < MIN_TOKEN_CHARS:
        raise WebError(f"the page's token has {len(token)} characters: use at least {MIN_TOKEN_CHARS} {example}")
    if token and (len(set(token)) < MIN_TOKEN_DISTINCT or token_bits(token) < MIN_TOKEN_BITS):
        raise WebError(f"the page's token is too easy to guess ({len(set(token))} different characters in "
                       f"{len(token)}, mostly repeated): use a random one {example}")
    if token and unsendable(token):
        raise WebError("the page's token holds a space, line break or control character, which a request "
                       f"cannot carry as typed: put one token on one line {example}")
    if token and is_a_run(token):
        raise WebError(f"the page's token is too easy to guess (a run like abcd or 1234): use a random one {example}")
    if token and is_repeated(token):
        raise WebError(f"the page's token is too easy to guess (a short part repeated): use a random one {example}")
    if token and token_file and os.stat(token_file).st_mode & (stat.S_IRGRP | stat.S_IROTH):
        say(f"{token_file} is readable by other users: chmod 600 {token_file}")


def _token_text(path: str) -> str:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise WebError(f"{path}: the token file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_token(token_file: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    environ = os.environ if environ is None else environ
    if token_file:
        token = _token_text(token_file)
        if not token:
            raise WebError(f"{token_file}: the token file is empty")
        return token
    creds = environ.get("CREDENTIALS_DIRECTORY")
    if creds and os.path.exists(os.path.join(creds, "web-token")):
        return _token_text(os.path.join(creds, "web-token")) or None
    return environ.get("FER_EDGE_WEB_TOKEN") or None
