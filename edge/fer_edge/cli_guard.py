"""The command lines' side of the one-line error policy (`core.errors`): click's exceptions
and exit codes, kept out of the ground floor so that nothing below the command line depends
on the command-line framework. `fer-edge`, `fer-train` and `fer-convert` all use `guarded`."""

import logging
import math
import os
import sys
from typing import Any

import click

from .core.errors import PIPE_CLOSED, close_stdout, one_line, stdout_closed, stdout_reader_gone
from .core.log import PRIORITIES, writes_to_journal


class OneLine(click.ClickException):
    """The user's one line, `Error: ...`; under systemd marked as an error for the journal."""

    def show(self, file: Any = None) -> None:
        stream = file or sys.stderr
        mark = f"<{PRIORITIES[logging.ERROR]}>" if writes_to_journal(stream, os.environ) else ""
        click.echo(f"{mark}Error: {self.format_message()}", file=stream)


def streams_closed_by_caller_to_devnull() -> None:
    """A stream the caller closed (`>&-`, `2>&-`) is None in Python: its writes go to
    /dev/null instead, as if it had been given, so the run does its work."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))


def guarded(group_class: type) -> type:
    """A click Group/Command subclass whose invoke turns exceptions into one-line errors."""

    class Guarded(group_class):
        def main(self, *args: Any, **kwargs: Any) -> Any:
            streams_closed_by_caller_to_devnull()
            return super().main(*args, **kwargs)

        def invoke(self, ctx: click.Context) -> Any:
            try:
                result = super().invoke(ctx)
            except BrokenPipeError as exc:
                if not stdout_reader_gone():
                    raise OneLine(one_line(exc)) from None
                close_stdout()
            except (click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
                raise
            except click.ClickException as exc:
                if type(exc) is not click.ClickException:
                    raise   # a usage error shows its usage
                raise OneLine(exc.message) from None
            except Exception as exc:  # noqa: BLE001 - the last line of defence
                if os.environ.get("FER_EDGE_DEBUG"):
                    raise
                raise OneLine(one_line(exc)) from None
            if stdout_closed():
                raise click.exceptions.Exit(PIPE_CLOSED)
            return result

    return Guarded


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange, refusing nan and inf: nan compares false with every limit, so a
    range alone lets `--max-loss nan` through and turns a gate off without a word."""

    name = "float range"   # as click shows its own

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number

