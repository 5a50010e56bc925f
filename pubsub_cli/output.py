"""Output: everything the command line shows, and the only module that imports rich.

People get rich tables, panels and progress bars; scripts get ``--json``: exactly one
JSON document on stdout (JSON lines for streams), with progress, logs and errors on
stderr. Colour and progress bars appear only on a terminal and never with ``NO_COLOR``.
rich is imported on first use, so ``pubsub --help`` starts fast.
"""

from __future__ import annotations

import os
import sys
import traceback as tb
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from uuid import UUID

import orjson

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Output", "TableStream", "jsonable"]

Cell = object
Progress = Callable[[int], None]


def jsonable(value: Any) -> Any:
    """``value`` with datetimes, UUIDs, enums, paths and decimals as JSON-friendly data."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID | Path | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def _fmt(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


class Output:
    """Where a command's results go; one per invocation.

    ``json_mode`` keeps stdout for the single JSON document; ``quiet`` silences notes on
    stderr (errors still show); ``verbose`` adds tracebacks to errors.
    """

    def __init__(
        self,
        *,
        json_mode: bool = False,
        quiet: bool = False,
        verbose: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        no_color: bool = False,
    ) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.verbose = verbose
        self.no_color = no_color  # --no-color; NO_COLOR in the environment does the same
        self._stdout = stdout
        self._stderr = stderr
        self._out: Console | None = None
        self._err: Console | None = None

    # -- streams ---------------------------------------------------------------------

    @property
    def stdout(self) -> TextIO:
        return self._stdout if self._stdout is not None else sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self._stderr if self._stderr is not None else sys.stderr

    def _console(self, stream: TextIO) -> Console:
        from rich.console import Console

        class _Console(Console):
            def on_broken_pipe(self) -> None:
                # rich would exit 1; the command line ends quietly instead (app.py).
                self.quiet = True
                raise BrokenPipeError

        no_color = self.no_color or bool(os.environ.get("NO_COLOR"))
        # Piped output is read by people later (less, CI logs): do not wrap at 80.
        tty = getattr(stream, "isatty", lambda: False)()
        width = None if tty or os.environ.get("COLUMNS") else 120
        return _Console(
            width=width,
            file=stream,
            no_color=no_color,
            highlight=False,
            emoji=False,
            color_system=None if no_color else "auto",
            soft_wrap=False,
        )

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = self._console(self.stdout)
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = self._console(self.stderr)
        return self._err

    @property
    def interactive(self) -> bool:
        """A person watches stderr: progress bars and status lines are worth drawing."""
        return not self.quiet and self.err.is_terminal and not self.err.is_dumb_terminal

    def with_json(self, json_mode: bool, *, stdout: TextIO | None = None) -> Output:
        """A copy of this output for a command that was given ``--json`` (writing its
        results to ``stdout`` when given)."""
        return Output(
            json_mode=json_mode,
            quiet=self.quiet,
            verbose=self.verbose,
            stdout=stdout if stdout is not None else self._stdout,
            stderr=self._stderr,
            no_color=self.no_color,
        )

    # -- plain messages (stderr) -------------------------------------------------------

    def note(self, message: str) -> None:
        """A remark for people (stderr); silenced by ``-q``."""
        if not self.quiet:
            self.err.print(message, markup=False, highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.err.print(f"warning: {message}", markup=False, style="yellow", soft_wrap=True)

    def error(self, message: str, exc: BaseException | None = None) -> None:
        """One line on stderr; with ``-v`` the traceback follows it."""
        line = " ".join(message.split())
        if self.verbose and exc is not None:
            self.stderr.write("".join(tb.format_exception(exc)))
        self.stderr.write(f"error: {line}\n")
        self.stderr.flush()

    def ready(self, message: str) -> None:
        """A line that says the command is now doing its job (tests wait for it)."""
        if self.quiet:
            return
        self.stderr.write(f"{message}\n")
        self.stderr.flush()

    # -- results (stdout) --------------------------------------------------------------

    def json(self, document: Any) -> None:
        """The single JSON document of a ``--json`` command."""
        self.stdout.write(orjson.dumps(jsonable(document), option=orjson.OPT_INDENT_2).decode())
        self.stdout.write("\n")
        self.stdout.flush()

    def json_line(self, document: Any) -> None:
        """One JSON line of a stream (``events list``, ``events tail``)."""
        self.stdout.write(orjson.dumps(jsonable(document)).decode())
        self.stdout.write("\n")
        self.stdout.flush()

    def line(self, text: str) -> None:
        """A plain line on stdout, for results that scripts read (sequence numbers)."""
        self.stdout.write(f"{text}\n")
        self.stdout.flush()

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Cell]],
        *,
        title: str | None = None,
        caption: str | None = None,
        styles: Mapping[str, str] | None = None,
    ) -> None:
        from rich import box
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD)
        cells = [[_fmt(c) for c in row] for row in rows]
        numeric = [
            bool(rows) and all(isinstance(r[i], int | float) or r[i] is None for r in rows)
            for i in range(len(columns))
        ]
        # Long free text (errors, payloads) wraps; short columns (ids, times) never do.
        longest = [max((len(r[i]) for r in cells), default=0) for i in range(len(columns))]
        stamps = [
            bool(rows) and all(isinstance(r[i], datetime) for r in rows)
            for i in range(len(columns))
        ]
        for i, (name, right) in enumerate(zip(columns, numeric, strict=True)):
            wraps = longest[i] > 16 and not stamps[i]
            table.add_column(
                name,
                justify="right" if right else "left",
                style=(styles or {}).get(name),
                overflow="fold" if wraps else "ellipsis",
                no_wrap=not wraps,
                min_width=12 if wraps else min(longest[i], 40),
            )
        for row_cells in cells:
            table.add_row(*row_cells)
        if title:
            self.out.print(title, markup=False, highlight=False, soft_wrap=True, style="bold")
        self.out.print(table)
        if caption:
            self.out.print(caption, markup=False, highlight=False, soft_wrap=True)

    def table_stream(
        self,
        columns: Sequence[str],
        *,
        title: str | None = None,
        min_widths: Mapping[str, int] | None = None,
    ) -> TableStream:
        """A table printed chunk by chunk as its rows are read (see ``TableStream``)."""
        return TableStream(self, columns, title=title, min_widths=min_widths)

    def json_lines(self, documents: Sequence[Any]) -> None:
        """Several JSON lines of a stream at once, with one write and one flush."""
        if documents:
            dumps = orjson.dumps
            self.stdout.write(
                "".join(
                    dumps(jsonable(d), option=orjson.OPT_APPEND_NEWLINE).decode() for d in documents
                )
            )
            self.stdout.flush()

    def fields(self, pairs: Sequence[tuple[str, Cell]], *, title: str | None = None) -> None:
        """A two-column table of names and values."""
        from rich import box
        from rich.table import Table

        table = Table(box=box.SIMPLE, show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for name, value in pairs:
            table.add_row(name, _fmt(value))
        if title:  # on its own line, as table() does: a title as wide as the table wraps
            self.out.print(title, markup=False, highlight=False, soft_wrap=True, style="bold")
        self.out.print(table)

    def block(self, title: str, text: str, *, lexer: str | None = None) -> None:
        """A titled block of text (a payload, a traceback)."""
        from rich.panel import Panel
        from rich.syntax import Syntax
        from rich.text import Text

        body: Any = (
            Syntax(text, lexer, word_wrap=True, background_color="default")
            if lexer and self.out.is_terminal
            else Text(text)
        )
        self.out.print(Panel(body, title=title, title_align="left", expand=False))

    def json_block(self, title: str, value: Any) -> None:
        """A titled block of indented JSON (a payload, a projection's state)."""
        self.block(title, orjson.dumps(value, option=orjson.OPT_INDENT_2).decode(), lexer="json")

    def tree(self, label: str, children: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """A tree whose nodes are ``(label, children)`` pairs."""
        from rich.tree import Tree

        def grow(node: Tree, items: Sequence[tuple[str, Sequence[Any]]]) -> None:
            for text, sub in items:
                grow(node.add(text, highlight=False), sub)

        root = Tree(label, highlight=False)
        grow(root, children)
        self.out.print(root)

    def text(self, message: str) -> None:
        """Rich-formatted text on stdout (a summary sentence under a table)."""
        self.out.print(message, highlight=False, soft_wrap=True)

    # -- interaction -------------------------------------------------------------------

    @contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[Progress]:
        """A progress bar on stderr (only on a terminal); yields ``advance(n)``."""
        if not self.interactive:
            yield lambda n: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)

    def status(self, message: str) -> None:
        """A periodic status line (only on a terminal)."""
        if self.interactive:
            self.err.print(message, markup=False, highlight=False, style="dim")

    def confirm(self, question: str) -> bool:
        from rich.prompt import Confirm

        return Confirm.ask(question, console=self.err, default=False)

    # -- how a command ended (cliw) ------------------------------------------------------

    def outcome(self, message: str) -> None:
        """The one line that says how an interrupted or partial command ended (stderr,
        shown even with ``-q``: it is the command's result, not a remark)."""
        self.stderr.write(f"{' '.join(message.split())}\n")
        self.stderr.flush()


class TableStream:
    """A table whose rows are printed as they arrive, a chunk at a time, for listings too
    long to hold in memory (a rich ``Table`` measures every row before it prints one).

    The column widths are fixed by the first chunk: each column is as wide as its header,
    its widest cell in that chunk and its ``min_widths`` entry, at most 40 characters; a
    later, longer cell is cut with ``…`` (numbers are never cut). The last column is not
    padded. A column whose cells in the first chunk are all numbers is right-aligned.
    The layout follows ``Output.table``: a bold header, a rule, then the rows.
    """

    _MAX = 40

    def __init__(
        self,
        output: Output,
        columns: Sequence[str],
        *,
        title: str | None = None,
        min_widths: Mapping[str, int] | None = None,
    ) -> None:
        self._output = output
        self._columns = list(columns)
        self._min = dict(min_widths or {})
        self._widths: list[int] = []
        self._right: list[bool] = []
        self.rows = 0
        if title:
            output.out.print(title, markup=False, highlight=False, soft_wrap=True, style="bold")
            output.stdout.write("\n")

    def _start(self, rows: Sequence[Sequence[Cell]], cells: list[list[str]]) -> None:
        for i, name in enumerate(self._columns):
            widest = max((len(r[i]) for r in cells), default=0)
            self._widths.append(min(max(len(name), widest, self._min.get(name, 0)), self._MAX))
            self._right.append(
                bool(rows)
                and all(isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in rows)
            )
        header = self._line(self._columns, header=True)
        self._output.out.print(header, markup=False, highlight=False, soft_wrap=True, style="bold")
        self._output.stdout.write(" " + "─" * max(len(header) - 1, 1) + "\n")

    def _line(self, cells: Sequence[str], *, header: bool = False) -> str:
        parts = []
        last = len(cells) - 1
        for i, (text, width) in enumerate(zip(cells, self._widths, strict=True)):
            if i == last:
                parts.append(text)
                continue
            if len(text) > width and not (self._right[i] and not header):
                text = text[: width - 1] + "…"
            parts.append(text.rjust(width) if self._right[i] else text.ljust(width))
        return "  " + "   ".join(parts)

    def add(self, rows: Sequence[Sequence[Cell]]) -> None:
        """Print these rows now."""
        cells = [[_fmt(c) for c in row] for row in rows]
        if not self._widths:
            self._start(rows, cells)
        if cells:
            self._output.stdout.write("".join(self._line(r) + "\n" for r in cells))
            self._output.stdout.flush()
        self.rows += len(cells)

    def close(self, caption: str | None = None) -> None:
        """End the table (printing its header when no row came) and its caption."""
        if not self._widths:
            self._start([], [])
        if caption:
            self._output.stdout.write("\n")
            self._output.out.print(caption, markup=False, highlight=False, soft_wrap=True)
        self._output.stdout.flush()


def number(value: int) -> str:
    """A count in a sentence, with thousands separators: ``2,000``, ``563``."""
    return f"{value:,}"


def _json_array_document(
    stream: TextIO, document: Mapping[str, Any], key: str, items: Iterator[bytes]
) -> None:
    head = orjson.dumps(jsonable(dict(document)), option=orjson.OPT_INDENT_2).decode()
    stream.write(head[:-1].rstrip())  # the object without its closing brace
    stream.write(f',\n  "{key}": [' if document else f'\n  "{key}": [')
    first = True
    for item in items:
        stream.write(("\n    " if first else ",\n    ") + item.decode())
        first = False
    stream.write("\n  ]\n}\n" if not first else "]\n}\n")
    stream.flush()


def json_with_array(
    out: Output, document: Mapping[str, Any], key: str, items: Iterator[bytes]
) -> None:
    """The single JSON document of a ``--json`` command whose ``key`` is a long array,
    given as encoded JSON values and written one by one (never built in memory)."""
    _json_array_document(out.stdout, document, key, items)
