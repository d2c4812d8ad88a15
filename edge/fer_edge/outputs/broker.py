"""The MQTT broker as every client of it sees it: where it is and how to log in (Broker),
why a connection fails, in words (`diagnose`: paho says only that it failed), and a device id
as one topic level."""

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Tuple

from ..core.errors import UserError
from ..core.network import read_password, split_host_port
from ..core.settings_sections import MqttSection

if TYPE_CHECKING:  # for the hint only: paho loads when a client is made
    from paho.mqtt.client import Client

KEEPALIVE_SECONDS = 30


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to reach it: [mqtt] with the port parsed and the password read."""

    host: str
    port: int
    username: Optional[str] = None
    password: Optional[str] = None
    tls_ca: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None

    @classmethod
    def from_section(cls, mqtt: MqttSection) -> "Broker":
        if not mqtt.host:
            raise UserError("no MQTT broker: --mqtt HOST[:PORT] or [mqtt] host")
        host, port = parse_host(mqtt.host)
        return cls(host, port, mqtt.username, read_password(mqtt.password_file), mqtt.tls_ca, mqtt.tls_cert, mqtt.tls_key)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self, client_id: str, **options: Any) -> "Client":
        """A paho client for this broker, its credentials and TLS set."""
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **options)
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls_ca or self.tls_cert:
            client.tls_set(ca_certs=self.tls_ca, certfile=self.tls_cert, keyfile=self.tls_key)
        return client

    def diagnose(self) -> str:
        return diagnose(self.host, self.port, self.tls_ca, self.tls_cert, self.tls_key)


def diagnose(host: str, port: int, tls_ca: Optional[str] = None, tls_cert: Optional[str] = None,
             tls_key: Optional[str] = None, timeout: float = 3.0) -> str:
    """Why a connection to the broker fails, in words: the TCP and TLS steps tried here
    directly, since paho reports only that it failed."""
    import socket
    import ssl

    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return "connection refused (nothing listens on that port)"
    except socket.timeout:
        return "no answer (timed out: a firewall, or the wrong address?)"
    except OSError as exc:
        return f"cannot connect ({exc.strerror or exc})"
    with sock:
        if tls_ca or tls_cert:
            context = ssl.create_default_context(cafile=tls_ca)
            if tls_cert:
                context.load_cert_chain(tls_cert, tls_key)
            try:
                context.wrap_socket(sock, server_hostname=host).close()
            except ssl.SSLCertVerificationError as exc:
                message = exc.verify_message or str(exc)
                if "hostname" in message.lower() or "ip address mismatch" in message.lower():
                    return f"TLS: the broker's certificate is not for {host} ({message})"
                return f"TLS: the broker's certificate is not trusted by {tls_ca} ({message})"
            except ssl.SSLError as exc:
                if "WRONG_VERSION_NUMBER" in str(exc) or "record layer" in str(exc).lower():
                    return "TLS: the port does not speak TLS (a plain MQTT port?)"
                return f"TLS: the handshake fails ({exc.reason or exc})"
            except (socket.timeout, OSError):
                return "TLS: the port does not speak TLS (no answer to the handshake: a plain MQTT port?)"
            return "the TCP and TLS steps work, but the broker gives no MQTT answer"
        if _speaks_tls(host, port, timeout):
            return "the port speaks TLS: give the broker's CA certificate (--mqtt-tls-ca)"
        return "the port accepts connections but gives no MQTT answer (not an MQTT broker?)"


def _speaks_tls(host: str, port: int, timeout: float) -> bool:
    import socket
    import ssl

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            context.wrap_socket(sock).close()
        return True
    except (OSError, ssl.SSLError):
        return False


def parse_host(value: str) -> Tuple[str, int]:
    """'host', 'host:port' or '[v6]:port' -> (host, port)."""
    return split_host_port(value, 1883)


def topic_id(device_id: str) -> str:
    """The device id as one MQTT topic level: no '/', '+' or '#' (they would split or match levels)."""
    return re.sub(r"[/+#\x00]", "_", device_id) or "_"

