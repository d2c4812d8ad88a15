"""What the collector checks of a device's message before any parsing or writing."""

import pytest

from fer_edge.fleet.message_check import (MAX_BYTES, MAX_DEPTH, Rejected, bounded, is_online, kept_copy, nesting,
                                         read_json, topic_parts)


def test_nesting_is_counted_without_parsing():
    assert nesting(b'{"a": [1, {"b": []}]}') == 4
    assert nesting(b'{"a": "[[[[{{{{", "b": "\\"[[[", "c": "\\\\"}') == 1   # brackets in texts, escaped quotes
    assert nesting(b"[" * 1_000_000) == MAX_DEPTH + 1                      # stops counting past the limit


def test_a_hostile_payload_is_refused_before_it_is_parsed():
    for payload, reason in ((b"x" * (MAX_BYTES + 1), f"over {MAX_BYTES:,} bytes"),
                            (b'{"a": "\x00"}', "a NUL byte"),
                            (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), f"nested more than {MAX_DEPTH} deep"),
                            (b'{"a": NaN}', "NaN is not a number"),
                            (b"\xff\xfe{}", "not JSON"),
                            (b"[1, 2]", "not a JSON object")):
        with pytest.raises(Rejected, match=reason):
            read_json(payload)
    assert read_json(b'{"a": [1, {"b": "[[[["}]}') == {"a": [1, {"b": "[[[["}]}
    assert len(bounded(b"x" * 10_000_000)) == MAX_BYTES + 1


def test_the_topic_gives_device_and_kind_and_a_hostile_device_id_is_refused():
    assert topic_parts("fer-edge/kiosk-1/session") == ("kiosk-1", "session")
    assert topic_parts("shop/3/fer-edge/kiosk-1/stats") == ("kiosk-1", "stats")
    for topic, reason in (("session", "not a PREFIX/DEVICE/KIND topic"), ("p//session", "0 characters"),
                          ("p/" + "k" * 200 + "/session", "200 characters"),
                          ("p/kiosk\x1b[2J/session", "control characters"), ("p/kiosk\u202e/session", "control")):
        with pytest.raises(Rejected, match=reason):
            topic_parts(topic)


def test_a_rejected_message_is_kept_as_bounded_text_any_database_takes():
    kept = kept_copy(b"\x00\xff\x1b[2J" + b"y" * 10_000)
    assert "\x00" not in kept and len(kept) < 2_010 and kept.startswith("\\u0000\ufffd\x1b[2J")
    assert kept_copy("\ud800").encode("utf-8")   # a lone surrogate is written out, not refused
    assert is_online(b" online\n") and not is_online(b"offline")
    with pytest.raises(Rejected, match="neither online nor offline"):
        is_online(b"maybe")
