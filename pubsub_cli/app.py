"""App: the ``pubsub`` command — its global flags, its command groups, and the one place
where library errors become a one-line message and an exit code.

Exit codes: 0 ok, 1 operational failure (a ``PubSubError`` or an ``OSError``, printed as
one line on stderr; the traceback only with ``-v``; any other exception is a bug, also
one line), 2 usage error (typer's, printed as one ``error:`` line and a ``try '...
--help'`` line rather than typer's boxed panel; ``--help`` keeps typer's rich layout).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from core.errors import PubSubError

from . import __version__
from .commands import bench, check, dlq, events, plugins, publish, replay, run, snapshot, stats
from .context import ID_MAX, CLIState, NoColorOption, RootDbOption, RootStoreOption, state
from .logs import LogFormat, LogLevel
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


def _tidy_param(param: Any) -> None:
    if getattr(param, "max", None) == ID_MAX and hasattr(param, "_get_number_range_help_str"):
        low = param.min
        param._get_number_range_help_str = lambda low=low: None if low is None else f"x>={low}"
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        if param.metavar is None:
            param.metavar = ""  # a flag takes no value: nothing to show
        if getattr(param, "count", False):
            param.show_default = False
    descriptor = getattr(param, "type_descriptor", None)
    choice = getattr(descriptor, "is_choice", False)
    if getattr(param, "param_type_name", None) == "argument":
        if not choice:  # typer would add <str> or <list[str]>: its name says it already
            param.display_type_rich = lambda ctx: None
        return
    if param.metavar is None and descriptor is not None and descriptor.is_ranged:
        param.metavar = "N" if descriptor.ranged_type_name == "int" else "NUMBER"
    if param.metavar is None and not choice:
        # typer would show the Python type (<str>, <list[str]>): name the value instead
        longs = [o for o in param.opts if o.startswith("--")]
        param.metavar = (longs[0] if longs else param.opts[0]).lstrip("-").upper()


def _tidy_help(command: Any) -> None:
    """What ``--help`` shows in the type column, made plain for every command: a flag
    shows nothing there (typer would print ``<bool>``, and ``<int> [default: 0]`` for
    ``-v``), a bounded number is ``N`` rather than ``<int range>``, and a range leaves out
    the 64-bit bound that only guards the store's integers (``[x>=1]`` rather than
    ``[1<=x<=9223372036854775807]``). Help only: parsing and range checks stay as
    declared. Written against typer 0.29 (pinned in pyproject.toml; a test reads every
    help screen)."""
    for param in getattr(command, "params", ()):
        _tidy_param(param)
    original = getattr(command, "get_help_option", None)
    if original is not None and not getattr(original, "_tidied", False):

        def help_option(ctx: Any, original: Any = original) -> Any:
            option = original(ctx)
            if option is not None:
                _tidy_param(option)
            return option

        help_option._tidied = True  # type: ignore[attr-defined]
        command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


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
        _tidy_help(self)
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


def version_line() -> str:
    """``pubsub X.Y.Z (Python A.B.C CPython, platform)``: what a bug report needs."""
    return (
        f"pubsub {__version__} (Python {platform.python_version()} "
        f"{platform.python_implementation()}, {platform.platform(terse=True)})"
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    verbose: Annotated[
        int,
        typer.Option(
            "-v",
            "--verbose",
            count=True,
            help="Show the traceback with an error (-v and -vv alike)",
        ),
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
    no_color: NoColorOption = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="PUBSUB_CONFIG",
            show_envvar=True,
            metavar="FILE",
            help="Read settings from this TOML file instead of the nearest pyproject.toml: "
            "its \\[tool.pubsub] table, or top-level keys in a plain pubsub.toml",
        ),
    ] = None,
    db: RootDbOption = None,
    store: RootStoreOption = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            "--log-level",
            envvar="PUBSUB_LOG_LEVEL",
            show_envvar=True,
            case_sensitive=False,
            metavar="LEVEL",
            help="debug, info, warning or error: the library's and the worker's log "
            "records at this level and above, on stderr \\[default: warning; error with -q]",
        ),
    ] = None,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            envvar="PUBSUB_LOG_FORMAT",
            show_envvar=True,
            case_sensitive=False,
            metavar="FORMAT",
            help="text or json: log lines as readable text or as one JSON object per line",
        ),
    ] = LogFormat.TEXT,
) -> None:
    """Event-replay workbench for pubsub."""
    obj = state(ctx)
    obj.verbose = 0
    obj.quiet = False
    obj.set_output_flags(verbose=verbose, quiet=quiet, no_color=no_color)
    obj.db = db
    obj.store = store
    obj.config = config
    obj.log_level = log_level
    obj.log_format = log_format
    obj.db_from_env = _from_env(ctx, "db")
    obj.store_from_env = _from_env(ctx, "store")


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
