"""Usage errors: what the command line prints for a bad option value, a missing argument,
an unknown option or command — one ``error:`` line naming the option (or the environment
variable the value came from), and one ``try '... --help'`` line.

typer (click) raises these as exceptions that carry the parameter and the context; the
root group's ``main`` catches them (see ``app``) and prints them with ``usage_lines``
instead of typer's boxed panel, which wraps long messages over several lines.
"""

from __future__ import annotations

import os
import re
from typing import Any

import typer

__all__ = ["is_help_request", "usage_lines"]


def is_help_request(exc: BaseException) -> bool:
    """A group called without a command (``no_args_is_help``): typer raises it after it
    has printed the group's help, which stays as it is."""
    return type(exc).__name__ == "NoArgsIsHelpError"


def usage_lines(exc: typer.TyperException) -> tuple[str, str | None]:
    """The one-line message (without ``error:``) and the help hint, if there is one."""
    return _message(exc), _hint(exc)


def _message(exc: typer.TyperException) -> str:
    kind = type(exc).__name__
    label = _label(exc)
    raw = " ".join(str(getattr(exc, "message", "") or "").split())
    if kind == "MissingParameter":
        param = getattr(exc, "param", None)
        what = getattr(param, "param_type_name", None) or "parameter"
        return f"missing {what} {label}" if label else f"missing {what}"
    if kind == "NoSuchOption":
        name = getattr(exc, "option_name", None) or raw
        close = list(getattr(exc, "possibilities", None) or [])
        suffix = f" (did you mean {' or '.join(sorted(close))}?)" if close else ""
        return f"no such option {name}{suffix}"
    if kind == "BadParameter" or (label and raw):
        return f"{label}: {_sentence(raw)}" if label else _sentence(raw)
    return _sentence(" ".join(exc.format_message().split()))


# typer's wording for a few common conversions, said shorter.
_REWORDED = (
    (re.compile(r"^value error, ", re.IGNORECASE), ""),
    (re.compile(r"^input should be a valid integer\b.*$", re.IGNORECASE), "not an integer"),
    (re.compile(r"^input should be a valid number\b.*$", re.IGNORECASE), "not a number"),
    (re.compile(r"^input should be greater than or equal to ", re.IGNORECASE), "must be >= "),
    (re.compile(r"^input should be greater than ", re.IGNORECASE), "must be > "),
    (re.compile(r"^input should be less than or equal to ", re.IGNORECASE), "must be <= "),
    (re.compile(r"^input should be less than ", re.IGNORECASE), "must be < "),
    (
        re.compile(r"^dir(ectory)? ('.*') does not exist$", re.IGNORECASE),
        r"folder \2 does not exist",
    ),
    (re.compile(r"^dir(ectory)? ('.*') is a file$", re.IGNORECASE), r"\2 is a file, not a folder"),
)


def _sentence(text: str) -> str:
    """A message as a clause: typer's wording shortened, ``Missing...`` ->
    ``missing...``, no final full stop."""
    text = text.rstrip(".")
    for pattern, replacement in _REWORDED:
        text = pattern.sub(replacement, text)
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    return text


def _label(exc: typer.TyperException) -> str | None:
    """How the message names the parameter: its long option, the environment variable
    its value came from, or an argument's metavar."""
    given = getattr(exc, "param_hint", None)
    if given:
        first = given if isinstance(given, str) else next(iter(given))
        return str(first).strip("'\"")
    param = getattr(exc, "param", None)
    if param is None:
        return None
    env = _env_source(exc, param)
    if env:
        return env
    opts = [str(o) for o in getattr(param, "opts", None) or []]
    if getattr(param, "param_type_name", None) == "argument" or not opts:
        metavar = getattr(param, "metavar", None)
        name = getattr(param, "name", None) or "argument"
        # "[ID]..." -> "ID": the metavar says how to type it, the message names it
        return str(metavar).strip("[]. ") if metavar else str(name).upper()
    longs = [o for o in opts if o.startswith("--")]
    return longs[0] if longs else opts[0]


def _env_source(exc: typer.TyperException, param: Any) -> str | None:
    """The environment variable the bad value came from, if it came from one."""
    ctx, name, envvar = (
        getattr(exc, "ctx", None),
        getattr(param, "name", None),
        getattr(param, "envvar", None),
    )
    if ctx is None or not name or not envvar:
        return None
    source = ctx.get_parameter_source(name)
    if getattr(source, "name", None) != "ENVIRONMENT":
        return None
    names = [envvar] if isinstance(envvar, str) else list(envvar)
    used = next((n for n in names if os.environ.get(n)), names[0])
    return f"{used}={os.environ.get(used, '')!r}"


def _hint(exc: typer.TyperException) -> str | None:
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return None
    return f"try '{ctx.command_path} --help'"
