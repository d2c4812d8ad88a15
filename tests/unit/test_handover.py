"""Who takes over a gone collector: the live one with the lowest client id, once."""

from fer_edge.fleet.handover import Roster, roster_topic


def roster(me):
    taken = []
    return Roster(me, taken.append), taken


def hear(r, client_id, payload):
    r.heard(roster_topic("fer-edge", "group", client_id), payload)


def test_the_lowest_live_collector_takes_over_a_gone_one_once():
    a, taken_by_a = roster("collector-a")
    b, taken_by_b = roster("collector-b")
    for r in (a, b):
        hear(r, "collector-a", b"up")
        hear(r, "collector-b", b"up")
        hear(r, "collector-c", b"gone")
        hear(r, "collector-c", b"gone")          # said again: still one handover
    assert taken_by_a == ["collector-c"] and taken_by_b == []


def test_when_the_lowest_is_gone_the_next_takes_it_over_and_what_it_was_taking():
    b, taken = roster("collector-b")
    hear(b, "collector-a", b"up")
    hear(b, "collector-c", b"gone")               # collector-a's to take
    assert taken == []
    hear(b, "collector-a", b"gone")               # and now collector-a is gone too
    assert sorted(taken) == ["collector-a", "collector-c"]


def test_a_cleared_or_returning_collector_is_not_taken_over_and_its_own_state_is_ignored():
    a, taken = roster("collector-a")
    hear(a, "collector-a", b"gone")               # its own will from a previous run
    hear(a, "collector-c", b"up")
    hear(a, "collector-d", b"")                   # cleared: taken over already
    assert taken == [] and a.states == {"collector-c": "up"}
    a.done("collector-c")
    hear(a, "collector-c", b"gone")
    a.done("collector-c")                         # that handover ended (the session came back, say)
    hear(a, "collector-c", b"gone")               # gone again: taken over again
    assert taken == ["collector-c", "collector-c"]

