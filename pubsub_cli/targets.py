"""Targets: turning ``TARGET`` arguments into the routers a bus includes.

A TARGET is a file path (``handlers.py``), a dotted module (``myapp.handlers``) or either
of them with ``:attribute``. Without an attribute every module-level ``Router`` and
``EventBus`` is taken; with one, that object: a Router, an EventBus, a list or tuple of
them, or a function taking no arguments that returns one of those. Nothing else is
called: ``orders.py:OrderPlaced`` (an event class) is refused, saying what it is. ``--app-dir`` is put first on ``sys.path``; ``--plugin NAME``
loads routers from the ``pubsub.handlers`` entry points. Every failure is a
``PluginLoadError`` whose one-line message names the file and the problem (with the line
number of a syntax error or of the failing line).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from core.entrypoints import load_plugin
from core.errors import PluginLoadError
from core.routing import Router

if TYPE_CHECKING:
    from core.bus import EventBus

__all__ = ["LoadedTargets", "load_targets"]


@dataclass(slots=True)
class LoadedTargets:
    """What the TARGETs and plugins contributed: routers and ready-made buses, each
    with the TARGET it came from."""

    routers: list[tuple[str, Router]] = field(default_factory=list)
    buses: list[tuple[str, EventBus]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.routers and not self.buses


def _is_bus(obj: object) -> bool:
    try:
        from core.bus import EventBus
    except ImportError:  # pragma: no cover - only while the bus is not installed
        return False
    return isinstance(obj, EventBus)


def _location(exc: BaseException, fallback: Path | None) -> str:
    """``file:line`` of the innermost frame of the user's code that raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    frame = user[-1] if user else (frames[-1] if frames else None)
    if frame is None:
        return str(fallback) if fallback else "?"
    return f"{frame.filename}:{frame.lineno}"


def _exec_failure(target: str, exc: BaseException, path: Path | None) -> PluginLoadError:
    if isinstance(exc, SyntaxError):
        where = exc.filename or (str(path) if path else target)
        return PluginLoadError(
            target, f"syntax error in {where} at line {exc.lineno}: {exc.msg}; fix the file"
        )
    return PluginLoadError(
        target,
        f"importing it failed at {_location(exc, path)}: {type(exc).__name__}: {exc}",
    )


def _add_path(folder: Path) -> None:
    entry = str(folder.resolve())
    if entry not in sys.path:
        sys.path.insert(0, entry)


def _import_file(target: str, path: Path) -> ModuleType:
    if not path.is_file():
        problem = "is a directory, not a Python file" if path.is_dir() else "no such file"
        raise PluginLoadError(str(path), f"{problem}; pass a handlers file or a dotted module")
    resolved = path.resolve()
    # Handler names default to module.qualname and are stored in the DLQ: the module's
    # name must be the same from one invocation to the next, so it is the file's stem.
    name = path.stem
    known = sys.modules.get(name)
    if known is not None:
        known_file = getattr(known, "__file__", None)
        if known_file is not None and Path(known_file).resolve() == resolved:
            return known
        raise PluginLoadError(
            str(path),
            f"a module named {name!r} is already imported from {known_file or 'built-ins'}; "
            "rename the file",
        )
    _add_path(resolved.parent)
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise PluginLoadError(str(path), "cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        if not isinstance(exc, Exception):
            raise
        raise _exec_failure(str(path), exc, resolved) from exc
    return module


def _import_dotted(target: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise PluginLoadError(
                target,
                f"no module named {exc.name!r} (neither a file nor importable from "
                "the current directory); check the spelling or pass --app-dir",
            ) from exc
        raise _exec_failure(target, exc, None) from exc
    except Exception as exc:
        raise _exec_failure(target, exc, None) from exc


def _looks_like_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec or Path(spec).is_file()


def _import(target: str, spec: str) -> ModuleType:
    if _looks_like_file(spec):
        return _import_file(target, Path(spec))
    return _import_dotted(target, spec)


def _collect(target: str, obj: object, found: LoadedTargets) -> bool:
    """Add ``obj`` when it is a Router or an EventBus, or every Router and EventBus a
    module holds at its top level; whether anything was added."""
    if isinstance(obj, Router):
        found.routers.append((target, obj))
        return True
    if _is_bus(obj):
        found.buses.append((target, obj))  # type: ignore[arg-type]
        return True
    if isinstance(obj, ModuleType):
        hits = False
        for value in list(vars(obj).values()):
            if isinstance(value, Router) or _is_bus(value):
                hits |= _collect(target, value, found)
        return hits
    return False


_EXPECTED = (
    "expected a Router, an EventBus, a list or tuple of them, or a function taking no "
    "arguments that returns one"
)


def _describe(obj: object) -> str:
    """What a TARGET's attribute is, in a few words for an error message."""
    if isinstance(obj, type):
        from core.events import Event

        kind = "an event class" if issubclass(obj, Event) else "a class"
        return f"{kind} ({obj.__module__}.{obj.__qualname__})"
    if inspect.isroutine(obj):
        return f"a function ({getattr(obj, '__qualname__', obj)!r})"
    text, name = repr(obj), type(obj).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name} ({text if len(text) <= 40 else text[:39] + '…'})"


def _takes_no_arguments(fn: object) -> bool:
    try:
        inspect.signature(fn).bind()  # type: ignore[arg-type]
    except TypeError:
        return False
    except ValueError:  # no signature to inspect (some built-ins): do not call it
        return False
    return True


def _collect_attribute(target: str, attr: str, obj: object, found: LoadedTargets) -> None:
    """``TARGET:attr``: a Router or an EventBus, a list or tuple of them, or a function
    taking no arguments that returns one of those. Anything else (an event class, a
    function that needs arguments, a number...) is refused without being called."""
    if _collect_one_or_many(target, obj, found):
        return
    if inspect.isroutine(obj) or isinstance(obj, functools.partial):
        if not _takes_no_arguments(obj):
            raise PluginLoadError(
                target, f"{attr!r} is {_describe(obj)} that needs arguments; {_EXPECTED}"
            )
        try:
            made = obj()
        except Exception as exc:
            raise _exec_failure(target, exc, None) from exc
        if _collect_one_or_many(target, made, found):
            return
        raise PluginLoadError(target, f"{attr}() returned {_describe(made)}; {_EXPECTED}")
    raise PluginLoadError(target, f"{attr!r} is {_describe(obj)}; {_EXPECTED}")


def _collect_one_or_many(target: str, obj: object, found: LoadedTargets) -> bool:
    if isinstance(obj, ModuleType):
        return False  # a submodule named as attribute: take it like a module TARGET
    if isinstance(obj, list | tuple):
        if obj and all(isinstance(o, Router) or _is_bus(o) for o in obj):
            for o in obj:
                _collect(target, o, found)
            return True
        return False
    return _collect(target, obj, found)


def load_targets(
    targets: Sequence[str],
    *,
    plugins: Sequence[str] = (),
    app_dir: Path | None = None,
    require_routers: bool = True,
) -> LoadedTargets:
    """Import every TARGET and plugin and collect their routers and buses. Without
    ``require_routers`` a module is only imported (it may define event classes only)."""
    _add_path(app_dir if app_dir is not None else Path.cwd())
    found = LoadedTargets()
    for target in targets:
        spec, _, attr = target.rpartition(":") if ":" in target else (target, "", "")
        if ":" in target and not spec:
            raise PluginLoadError(target, "expected MODULE:ATTRIBUTE")
        module = _import(target, spec)
        if attr:
            obj: Any = module
            for part in attr.split("."):
                try:
                    obj = getattr(obj, part)
                except AttributeError:
                    raise PluginLoadError(
                        target, f"module {module.__name__!r} has no attribute {attr!r}"
                    ) from None
            if isinstance(obj, ModuleType):
                if not _collect(target, obj, found) and require_routers:
                    raise PluginLoadError(target, f"module {attr!r} defines no Router or EventBus")
            else:
                _collect_attribute(target, attr, obj, found)
        elif not _collect(target, module, found) and require_routers:
            raise PluginLoadError(
                target,
                "defines no Router or EventBus at module level; add 'router = Router()' "
                "and subscribe handlers to it, or name one with TARGET:attribute",
            )
    for name in plugins:
        _collect_plugin(name, found)
    return found


def _collect_plugin(name: str, found: LoadedTargets) -> None:
    obj = load_plugin("pubsub.handlers", name)
    if _collect_one_or_many(f"plugin {name}", obj, found):
        return
    if not inspect.isroutine(obj):
        raise PluginLoadError(
            f"plugin {name!r}", f"entry point gave a {type(obj).__name__}, not a Router"
        )
    _collect_attribute(f"plugin {name}", name, obj, found)


def check_handlers_plugin(name: str) -> str | None:
    """Why the ``pubsub.handlers`` entry point ``name`` cannot serve as handlers (it
    does not load, or gives no Router or EventBus), or None when it can."""
    try:
        _collect_plugin(name, LoadedTargets())
    except PluginLoadError as exc:
        return exc.problem
    return None
