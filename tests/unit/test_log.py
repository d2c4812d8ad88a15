"""What fer-edge says: `fer-edge: ` lines in a terminal, syslog priorities for the journal."""

import logging
import os

from fer_edge.core import log


def test_lines_carry_their_priority_when_stderr_is_the_journal(tmp_path):
    path = tmp_path / "stderr"
    with open(path, "w") as stream:
        info = os.fstat(stream.fileno())
        log.setup(stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
        log.say("MQTT connected")
        log.warn("log full")
        log.LOGGER.error("camera gone")
    assert path.read_text().splitlines() == ["<6>MQTT connected", "<4>log full", "<3>camera gone"]


def test_a_terminal_gets_plain_lines(tmp_path):
    path = tmp_path / "stderr"
    with open(path, "w") as stream:
        log.setup(stream, {"JOURNAL_STREAM": "1:2"})   # another stream is the journal's
        log.say("web page on http://127.0.0.1:8080/")
        log.LOGGER.debug("not shown")
    assert path.read_text() == "fer-edge: web page on http://127.0.0.1:8080/\n"
    log.setup()
    assert log.LOGGER.level == logging.INFO and len(log.LOGGER.handlers) == 1
