"""The durable outbox and its sender."""

import time

from fer_edge.outputs.outbox import Outbox


def test_outbox_keeps_order_and_drops_emotions_first(tmp_path):
    box = Outbox(str(tmp_path / "outbox.db"), max_messages=3)
    box.put("session", "t/session", {"n": 1})
    box.put("emotion", "t/emotion", {"n": 2})
    box.put("session", "t/session", {"n": 3})
    box.put("session", "t/session", {"n": 4})  # over the bound: the oldest emotion goes
    rows = box.pending()
    assert [r[1] for r in rows] == ["t/session"] * 3 and box.counters() == {"dropped_emotion": 1}
    box.put("session", "t/session", {"n": 5})  # no emotion left: the oldest of anything
    assert box.counters() == {"dropped_emotion": 1, "dropped_session": 1}
    seqs = [r[0] for r in box.pending()]
    box.acknowledged(seqs[:2])
    assert box.count() == 1 and box.pending(after_seq=seqs[2]) == []
    box.close()


def test_outbox_sender_takes_an_acknowledgement_that_comes_before_send_returns(tmp_path):
    """A broker on loopback can acknowledge a message before publish() has returned its id:
    the row is still deleted and its place in the window given back."""
    from fer_edge.outputs.outbox import OutboxSender, Transport

    class AnswersAtOnce(Transport):
        def __init__(self):
            self.sender, self.sent, self.next_id = None, [], 0

        def ready(self):
            return self.sender is not None

        def send(self, address, payload, qos, retain):
            self.next_id += 1
            self.sent.append(payload)
            self.sender.acknowledge(self.next_id)   # the answer arrives on another thread, first
            return True, self.next_id

    path = str(tmp_path / "outbox.db")
    box = Outbox(path)
    for n in range(30):
        box.put("session", "t/session", {"n": n})
    transport = AnswersAtOnce()
    sender = OutboxSender(path, transport, window=5)
    transport.sender = sender
    sender.nudge()
    deadline = time.monotonic() + 10
    while box.count() and time.monotonic() < deadline:
        time.sleep(0.05)
    sender.stop()
    assert box.count() == 0 and len(transport.sent) == 30 and not sender.inflight
    box.close()
