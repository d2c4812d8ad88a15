"""The command lines' one-line error policy: whatever a command raises, the user reads one
line and a non-zero exit, never a traceback; usage errors still show their usage. Each case
runs a real click command in its own Python process."""

import os
import subprocess
import sys
import textwrap

import pytest

COMMAND = textwrap.dedent("""
    import sys
    import click
    from fer_edge.cli_guard import guarded
    from fer_edge.core.errors import UserError

    @click.command(cls=guarded(click.Command))
    @click.argument("what")
    @click.option("--count", type=int, default=1)
    def main(what, count):
        if what == "user":
            raise UserError("cannot read /no/such.mp4: no such file\\nsecond line never shown")
        if what == "bug":
            {}["missing"]
        if what == "oserror":
            open("/no/such/folder/file")
        if what == "click":
            raise click.ClickException("a plain click error")
        for n in range(count):
            print("line", n, flush=True)

    main()
""")


def run(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-c", COMMAND, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, **kwargs)


@pytest.mark.parametrize("what, line", [
    ("user", "Error: cannot read /no/such.mp4: no such file"),
    ("oserror", "Error: [Errno 2] No such file or directory: '/no/such/folder/file'"),
    ("bug", "Error: KeyError: 'missing' (an error in fer-edge; set FER_EDGE_DEBUG=1 to see where)"),
    ("click", "Error: a plain click error"),
])
def test_every_failure_is_one_line_and_exit_1(what, line):
    done = run(what, env={"FER_EDGE_DEBUG": ""})
    assert done.returncode == 1 and done.stderr == line + "\n", done.stderr


def test_debug_shows_the_traceback_and_usage_errors_show_their_usage():
    debug = run("bug", env={"FER_EDGE_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "KeyError" in debug.stderr
    usage = run("ok", "--count", "many")
    assert usage.returncode == 2 and "Usage:" in usage.stderr and "'many' is not a valid integer" in usage.stderr


def test_under_systemd_the_line_is_marked_as_an_error_for_the_journal(tmp_path):
    journal = tmp_path / "journal"
    with open(journal, "w") as stream:
        info = os.fstat(stream.fileno())
        done = subprocess.run([sys.executable, "-c", COMMAND, "user"], stdout=subprocess.PIPE, stderr=stream,
                              env={**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}, timeout=60)
    assert done.returncode == 1 and journal.read_text() == "<3>Error: cannot read /no/such.mp4: no such file\n"


def test_a_reader_that_goes_away_ends_the_command_quietly():
    head = subprocess.Popen([sys.executable, "-c", COMMAND, "ok", "--count", "100000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert head.stdout.readline() == b"line 0\n"
    head.stdout.close()
    _, err = head.communicate(timeout=60)
    assert head.returncode == 141 and b"Traceback" not in err and b"Error" not in err, err
