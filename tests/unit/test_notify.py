"""systemd notifications and the watchdog."""

import time


def test_the_watchdog_is_not_fed_while_a_worker_is_down(tmp_path):
    """A real unix datagram socket as $NOTIFY_SOCKET: frames progress, but a dead sender stops the pings."""
    import socket

    from fer_edge.kiosk.notify import Notifier
    from fer_edge.kiosk.pipeline import Stats

    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(0.2)
    alive = {"sender": True}
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"}, healthy=lambda: alive["sender"])

    def pings(frames):
        said = []
        for n in range(frames):
            notifier.on_frame(None, [], Stats(frames=len(said) * 1000 + n + 1))
            time.sleep(0.015)
        try:
            while True:
                said.append(server.recv(4096).decode())
        except OSError:
            return sum("WATCHDOG=1" in message for message in said)

    assert pings(10) > 0
    alive["sender"] = False
    assert pings(10) == 0
    server.close()
