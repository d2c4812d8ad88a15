"""Host and port as every setting spells them, addresses told without their passwords, and
the client behind a trusted proxy, on hostile spellings."""

import pytest

from fer_edge.core.network import client_address, parse_networks, split_host_port, within, without_password


def test_host_and_port_in_every_spelling():
    assert split_host_port("[::1]:8080", None) == ("::1", 8080)
    assert split_host_port("broker.lan", 1883) == ("broker.lan", 1883)
    assert split_host_port("10.0.0.5:8883", 1883) == ("10.0.0.5", 8883)
    assert split_host_port("fe80::1", 1883) == ("fe80::1", 1883)   # a bare IPv6 address has no port
    for bad, default in (("host:0", 1883), ("host:65536", 1883), ("host:http", 1883), (":1883", 1883),
                         ("[::1", 1883), ("[::1]x", 1883), ("broker.lan", None), ("   ", 1883)):
        with pytest.raises(ValueError):
            split_host_port(bad, default)


def test_without_password_masks_every_form_an_address_takes():
    assert without_password("postgresql://fleet:s3cret@db:5432/fleet") == "postgresql://fleet:***@db:5432/fleet"
    assert without_password("postgres://fleet@db/fleet?sslmode=require&password=s3cret&x=1") == \
        "postgres://fleet@db/fleet?sslmode=require&password=***&x=1"
    assert without_password("host=db password='a b\\' c' dbname=fleet") == "host=db password=*** dbname=fleet"
    assert without_password("postgresql://:s3cret@db1,db2/fleet") == "postgresql://:***@db1,db2/fleet"
    assert without_password("postgresql://fleet:s3/cr?et@db/fleet") == "postgresql://fleet:***@db/fleet"
    for harmless in ("/var/lib/fer-edge/fleet.db", "postgresql://fleet@db/fleet", "mqtt.example:1883"):
        assert without_password(harmless) == harmless


def test_networks_are_read_and_a_bad_one_is_named():
    networks = parse_networks("127.0.0.1, 10.0.0.0/8, ::1,")
    assert [str(n) for n in networks] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert within("10.2.3.4", networks) and within("::1", networks) and not within("192.168.1.1", networks)
    assert not within("not an address", networks) and not within("", networks)
    with pytest.raises(ValueError, match="'10.0.0.0/33' is not an IP address or network"):
        parse_networks("10.0.0.0/33")


def test_the_client_behind_a_trusted_proxy_is_read_from_the_right():
    proxies = parse_networks("127.0.0.1")
    assert client_address("127.0.0.1", "203.0.113.9", proxies) == "203.0.113.9"
    # Whatever the client wrote on the left is ignored: the nearest untrusted hop is the client.
    assert client_address("127.0.0.1", "1.1.1.1, 203.0.113.9, 127.0.0.1", proxies) == "203.0.113.9"
    # From a peer that is no proxy, the header is anyone's word.
    assert client_address("203.0.113.7", "127.0.0.1", proxies) == "203.0.113.7"
    # A hop that is no address ends the walk at the last known one.
    assert client_address("127.0.0.1", "<script>, 203.0.113.9", proxies) == "203.0.113.9"
    assert client_address("127.0.0.1", "garbage", proxies) == "127.0.0.1"
