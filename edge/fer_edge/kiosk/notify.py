"""systemd's notify protocol, spoken directly over $NOTIFY_SOCKET (no extra dependency).

READY=1 after the first processed frame, STATUS= with fps and faces, WATCHDOG=1 only when
frames have progressed since the last ping and every worker (the sinks' threads: the MQTT
sender and network thread) still runs, so a camera that hangs or a sender that died stops
the pings and systemd restarts the service; STOPPING=1 on shutdown. Without $NOTIFY_SOCKET it does nothing.
"""

import os
import socket
import time
from typing import TYPE_CHECKING, Callable, List, Mapping, Optional

if TYPE_CHECKING:  # for the hints only: a frame hook needs none of these at run time
    from ..vision.capture import Frame
    from .pipeline import Stats
    from ..vision.track import Track


class Notifier:
    def __init__(self, environ: Optional[Mapping[str, str]] = None, healthy: Callable[[], bool] = lambda: True):
        environ = os.environ if environ is None else environ
        self.healthy = healthy
        address = environ.get("NOTIFY_SOCKET")
        self.socket = None
        if address:
            if address.startswith("@"):
                address = "\0" + address[1:]  # abstract namespace
            self.address = address
            self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        watched = bool(usec and usec.isdigit() and (not pid or pid == str(os.getpid())))
        # Ping at half the watchdog interval, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval = int(usec) / 2e6 if usec and watched else None
        self.status_interval = 5.0
        self.ready = False
        self.last_ping = self.last_status = 0.0
        self.frames_at_ping = 0

    @property
    def active(self) -> bool:
        return self.socket is not None

    def send(self, *fields: str) -> None:
        if not self.socket:
            return
        try:
            self.socket.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            pass  # systemd gone (shutdown) or a socket we may not write: never fatal

    def on_frame(self, frame: "Frame", tracks: "List[Track]", stats: "Stats") -> None:
        """A frame hook: called after every processed frame."""
        if not self.socket:
            return
        now = time.monotonic()
        if not self.ready:
            self.ready = True
            self.send("READY=1", self._status(stats))
            self.last_status = now
        if (self.watchdog_interval and stats.frames > self.frames_at_ping and now - self.last_ping >= self.watchdog_interval
                and self.healthy()):
            self.send("WATCHDOG=1")
            self.last_ping, self.frames_at_ping = now, stats.frames
        if now - self.last_status >= self.status_interval:
            self.send(self._status(stats))
            self.last_status = now

    @staticmethod
    def _status(stats: "Stats") -> str:
        return f"STATUS={stats.frames} frames, {stats.recent_fps():.1f} fps, {stats.faces} faces, {stats.tracks} tracks"

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self.socket:
            self.socket.close()
