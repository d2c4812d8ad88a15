"""The broker as its clients see it: its address, the login read once, a device id as one topic
level, and why a connection fails, tried against real sockets on 127.0.0.1."""

import socket

import pytest

from conftest import free_port
from fer_edge.core.errors import UserError
from fer_edge.core.settings_sections import MqttSection
from fer_edge.outputs.broker import Broker, diagnose, parse_host, topic_id


def test_an_address_with_or_without_a_port():
    assert parse_host("broker.lan") == ("broker.lan", 1883)
    assert parse_host("broker.lan:8883") == ("broker.lan", 8883)
    assert parse_host("[::1]:1884") == ("::1", 1884)
    with pytest.raises(ValueError):
        parse_host("broker.lan:http")


def test_the_section_becomes_a_broker_with_its_password_read(tmp_path):
    (tmp_path / "password").write_text("s3cret\n")
    broker = Broker.from_section(MqttSection(host="127.0.0.1:1884", username="kiosk",
                                             password_file=str(tmp_path / "password")))
    assert (broker.address, broker.username, broker.password) == ("127.0.0.1:1884", "kiosk", "s3cret")
    with pytest.raises(UserError, match="no MQTT broker"):
        Broker.from_section(MqttSection(host=""))


@pytest.mark.parametrize("device_id, level", [("kiosk-1", "kiosk-1"), ("pi/4", "pi_4"), ("a+b#c", "a_b_c"),
                                              ("", "_")])
def test_a_device_id_is_one_topic_level(device_id, level):
    assert topic_id(device_id) == level


def test_nothing_listening_is_a_refusal():
    assert diagnose("127.0.0.1", free_port(), timeout=1.0) == "connection refused (nothing listens on that port)"


def test_a_port_that_accepts_and_never_answers():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        assert diagnose("127.0.0.1", port, timeout=0.5) == ("the port accepts connections but gives no MQTT "
                                                             "answer (not an MQTT broker?)")
