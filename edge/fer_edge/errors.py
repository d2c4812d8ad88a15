"""One policy for every command line: a user-facing error is one line and exit status 1,
never a traceback (set FER_EDGE_DEBUG=1 to see one)."""

import os

import click


def guarded(group_class):
    """A click Group/Command subclass whose invoke turns exceptions into one-line errors."""

    class Guarded(group_class):
        def invoke(self, ctx):
            try:
                return super().invoke(ctx)
            except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - the last line of defence
                if os.environ.get("FER_EDGE_DEBUG"):
                    raise
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if not isinstance(exc, (ValueError, OSError, RuntimeError)):
                    text = f"{type(exc).__name__}: {text}"
                raise click.ClickException(text) from None

    return Guarded
