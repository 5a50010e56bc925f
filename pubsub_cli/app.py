"""App: the ``pubsub`` command — its global flags, its command groups, and the one place
where library errors become a one-line message and an exit code.

Exit codes: 0 ok, 1 operational failure (a ``PubSubError`` or an ``OSError``, printed as
one line on stderr; the traceback only with ``-v``; any other exception is a bug, also
one line), 2 usage error (typer's, printed as one ``error:`` line and a ``try '...
--help'`` line rather than typer's boxed panel; ``--help`` keeps typer's rich layout).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from core.errors import PubSubError

from . import __version__
from .commands import bench, check, dlq, events, plugins, publish, replay, run, snapshot, stats
from .context import CLIState, RootDbOption, RootStoreOption, state
from .output import Output
from .settings import SettingsError
from .usage import is_help_request, usage_lines

__all__ = ["app", "main"]


def _stdout_gone() -> NoReturn:
    """The reader of stdout left early (``pubsub events list | head -1``): it has what
    it wanted, so this is no error. Exit 0 quietly, with stdout pointed at /dev/null so
    that the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # no file descriptor behind stdout
        pass
    sys.exit(0)


class _PubSubGroup(TyperGroup):
    """The root group: catches the library's root error once, for every command, and
    prints usage errors as one line."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            # Not standalone: typer hands back usage errors instead of boxing them, and
            # returns the code of a typer.Exit (0 after --help or --version).
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as exc:  # click's ClickException and its usage errors
            if not is_help_request(exc):
                message, hint = usage_lines(exc)
                sys.stderr.write(f"error: {message}\n")
                if hint and exc.exit_code == 2:
                    sys.stderr.write(f"{hint}\n")
                sys.stderr.flush()
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.stderr.write("aborted\n")
            sys.exit(1)
        except BrokenPipeError:
            _stdout_gone()
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _stdout_gone()
        except (PubSubError, OSError) as exc:
            obj = ctx.obj if isinstance(ctx.obj, CLIState) else CLIState()
            obj.output.error(str(exc), exc)
            raise typer.Exit(1) from None
        except SettingsError as exc:  # [tool.pubsub] in pyproject.toml: a usage error
            obj = ctx.obj if isinstance(ctx.obj, CLIState) else CLIState()
            obj.output.error(str(exc), exc)
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # exit codes and usage errors: main() reports them
        except Exception as exc:  # a bug: still one line, the traceback with -v
            obj = ctx.obj if isinstance(ctx.obj, CLIState) else CLIState()
            obj.output.error(
                f"unexpected {type(exc).__name__}: {exc} (a bug in pubsub: please report it; "
                "-v shows the traceback)",
                exc,
            )
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_PubSubGroup,
    name="pubsub",
    help="Event-replay workbench for pubsub: run handlers, publish, browse, replay, "
    "snapshot, inspect the DLQ, benchmark.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pubsub {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    verbose: Annotated[
        int, typer.Option("-v", "--verbose", count=True, help="Show tracebacks and more detail")
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Only results and errors: no notes on stderr")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit"
        ),
    ] = False,
    db: RootDbOption = None,
    store: RootStoreOption = None,
) -> None:
    """Event-replay workbench for pubsub."""
    obj = state(ctx)
    obj.verbose = verbose
    obj.quiet = quiet and not verbose
    obj.db = db
    obj.store = store
    obj.db_from_env = _from_env(ctx, "db")
    obj.store_from_env = _from_env(ctx, "store")
    obj.output = Output(quiet=obj.quiet, verbose=verbose > 0)


def _from_env(ctx: typer.Context, name: str) -> bool:
    """Whether the root option ``name`` was read from its environment variable."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "ENVIRONMENT"


app.add_typer(events.app, name="events")
app.add_typer(snapshot.app, name="snapshot")
app.add_typer(dlq.app, name="dlq")
app.add_typer(plugins.app, name="plugins")
app.command("run")(run.run)
app.command("publish")(publish.publish)
app.command("replay")(replay.replay)
app.command("bench")(bench.bench)
app.command("stats")(stats.stats)
app.command("check")(check.check)


def main(argv: list[str] | None = None) -> None:
    """The console script: ``pubsub`` and ``python -m pubsub_cli``."""
    app(args=argv, prog_name="pubsub", obj=CLIState())
