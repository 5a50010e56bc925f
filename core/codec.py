"""Codec: events to JSON bytes (orjson) and back, exactly.

Encoding lets orjson walk the dataclass natively (it handles datetimes, UUIDs, enums,
tuples and nested dataclasses in C) where its walk writes exactly the fields decoding
takes; a class it would write differently (no slots below a slots class, as an event
class without ``slots=True``; a field named with a leading underscore; an ``init=False``
field) is written field by field. Encoding also checks what orjson would silently change:
a float field holding NaN or infinity would be written as ``null``, and a datetime whose
UTC offset has seconds or microseconds would have its offset rounded to the minute. The
first is refused; the second is written faithfully (such an event is encoded with every
date and time through ``isoformat``). Fields whose type cannot hold a float or a datetime
are never looked at, and a field annotated exactly ``float`` or ``datetime`` is checked in
place, so most events pay little for the checks. What orjson refuses (integers beyond 64
bits, strings with unpaired surrogates) is searched for after it fails, to name the field.

Decoding is driven by each class's type hints, compiled once into a plan of per-field
converters. Every mismatch is an ``EventDecodeError`` naming the type and the field
path (``lines.0.qty``); unknown fields are refused too, so a typo never vanishes.
Each plan also compiles a builder for what encode writes (every field present, values
of their JSON types): straight-line code that checks each value's type inline, calls a
converter only for values that need one (UUIDs, datetimes, nested objects) and, for a
class whose ``__init__`` would only set the fields, fills a bare instance directly. A
payload the builder does not take goes through the checked path above.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar, get_args, get_origin
from uuid import UUID, SafeUUID

import orjson

from .errors import EventDecodeError, EventDefinitionError, EventEncodeError
from .events import Event, EventRegistry, default_registry, slot_setter

__all__ = ["decode", "decode_as", "encode", "from_dict", "to_dict"]

E = TypeVar("E", bound=Event)
Converter = Callable[[Any], Any]

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


class _FieldError(Exception):
    """A converter's complaint; the path is filled in on the way out."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.path: list[str] = []


def _bad(expected: str, value: Any) -> _FieldError:
    return _FieldError(f"expected {expected}, got {type(value).__name__} {value!r:.60}")


# -- decoding: converters -------------------------------------------------------------


def _identity(value: Any) -> Any:
    return value


def _conv_str(value: Any) -> Any:
    if type(value) is str:
        return value
    raise _bad("str", value)


def _conv_int(value: Any) -> Any:
    if type(value) is int:
        return value
    raise _bad("int", value)


def _conv_float(value: Any) -> Any:
    t = type(value)
    if t is float:
        return value
    if t is int:
        return float(value)
    raise _bad("float", value)


def _conv_bool(value: Any) -> Any:
    if type(value) is bool:
        return value
    raise _bad("bool", value)


def _conv_none(value: Any) -> Any:
    if value is None:
        return None
    raise _bad("null", value)


def _parse_with(kind: type, parse: Callable[[str], Any]) -> Converter:
    label = kind.__name__

    def conv(value: Any) -> Any:
        if type(value) is not str:
            raise _bad(f"{label} as a string", value)
        try:
            return parse(value)
        except (ValueError, InvalidOperation) as exc:
            raise _FieldError(f"invalid {label} {value!r:.60}: {exc}") from None

    return conv


def _parse_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    # Python 3.11 reads an offset of under a second ("+00:00:00.000001") as zero.
    if text[-7:-6] == "." and text[-16:-15] in ("+", "-") and text[-15:-7] == "00:00:00":
        micros = int(text[-6:])
        offset = timedelta(microseconds=-micros if text[-16] == "-" else micros)
        if value.utcoffset() != offset:
            value = value.replace(tzinfo=timezone(offset))
    return value


_conv_datetime_checked = _parse_with(datetime, _parse_datetime)
_fromisoformat = datetime.fromisoformat


def _conv_datetime(value: Any) -> Any:
    # What encode writes: one call to fromisoformat. A "." seven characters from the
    # end may be an offset with microseconds, which _parse_datetime looks after.
    if type(value) is str and value[-7:-6] != ".":
        try:
            return _fromisoformat(value)
        except ValueError:
            pass  # the checked path raises the error naming the value
    return _conv_datetime_checked(value)


_conv_date = _parse_with(date, date.fromisoformat)
_conv_time = _parse_with(time, time.fromisoformat)
_conv_uuid_checked = _parse_with(UUID, UUID)


def _uuid_converter() -> Converter:
    """A UUID is built from the integer of its 32 hex digits without UUID.__init__, which
    does the same computation after handling braces and "urn:uuid:" prefixes: int()
    refuses those characters, so such strings (and every error) go through UUID()."""
    int_slot, safe_slot = UUID.__dict__.get("int"), UUID.__dict__.get("is_safe")
    if not (
        isinstance(int_slot, types.MemberDescriptorType)
        and isinstance(safe_slot, types.MemberDescriptorType)
    ):
        return _conv_uuid_checked
    new, set_int, set_safe, unknown = (
        object.__new__,
        int_slot.__set__,
        safe_slot.__set__,
        SafeUUID.unknown,
    )

    def conv(value: Any) -> Any:
        if type(value) is str:
            digits = value.replace("-", "")
            if len(digits) == 32:
                try:
                    number = int(digits, 16)
                except ValueError:
                    pass  # not hex: the checked path says so
                else:
                    uuid = new(UUID)
                    set_int(uuid, number)
                    set_safe(uuid, unknown)  # what UUID(text) records
                    return uuid
        return _conv_uuid_checked(value)

    return conv


_conv_uuid = _uuid_converter()
_conv_decimal = _parse_with(Decimal, Decimal)


def _conv_enum(kind: type[enum.Enum]) -> Converter:
    def conv(value: Any) -> Any:
        try:
            return kind(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in kind)
            raise _FieldError(f"{value!r:.60} is not a {kind.__name__} ({choices})") from None

    return conv


def _conv_sequence(item: Converter, make: Callable[[list[Any]], Any], label: str) -> Converter:
    def conv(value: Any) -> Any:
        if type(value) is not list:
            raise _bad(label, value)
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except _FieldError as err:
                err.path.insert(0, str(i))
                raise
        return make(out)

    return conv


def _conv_fixed_tuple(items: tuple[Converter, ...]) -> Converter:
    def conv(value: Any) -> Any:
        if type(value) is not list or len(value) != len(items):
            raise _bad(f"an array of {len(items)}", value)
        out = []
        for i, (c, v) in enumerate(zip(items, value, strict=True)):
            try:
                out.append(c(v))
            except _FieldError as err:
                err.path.insert(0, str(i))
                raise
        return tuple(out)

    return conv


def _conv_dict(key: Converter, val: Converter) -> Converter:
    def conv(value: Any) -> Any:
        if type(value) is not dict:
            raise _bad("an object", value)
        out = {}
        for k, v in value.items():
            try:
                out[key(k)] = val(v)
            except _FieldError as err:
                err.path.insert(0, str(k))
                raise
        return out

    return conv


def _conv_union(options: tuple[Converter, ...], label: str) -> Converter:
    def conv(value: Any) -> Any:
        for c in options:
            try:
                return c(value)
            except _FieldError:
                continue
        raise _bad(label, value)

    return conv


def _conv_optional(inner: Converter) -> Converter:
    def conv(value: Any) -> Any:
        return None if value is None else inner(value)

    unchanged, call = _SHORTCUTS.get(inner, ((), inner))
    _SHORTCUTS[conv] = ((type(None), *unchanged), call)
    return conv


# Converters that return some values untouched: (the types of those values, what to call
# for the others). The compiled builders test the type inline and skip the call.
_SHORTCUTS: dict[Converter, tuple[tuple[type, ...], Converter]] = {
    _conv_str: ((str,), _conv_str),
    _conv_int: ((int,), _conv_int),
    _conv_float: ((float,), _conv_float),
    _conv_bool: ((bool,), _conv_bool),
    _conv_none: ((type(None),), _conv_none),
}


def _conv_literal(choices: tuple[Any, ...]) -> Converter:
    def conv(value: Any) -> Any:
        if value in choices:
            return value
        raise _FieldError(f"{value!r:.60} is not one of {choices!r}")

    return conv


_SCALARS: dict[Any, Converter] = {
    str: _conv_str,
    int: _conv_int,
    float: _conv_float,
    bool: _conv_bool,
    type(None): _conv_none,
    None: _conv_none,
    datetime: _conv_datetime,
    date: _conv_date,
    time: _conv_time,
    UUID: _conv_uuid,
    Decimal: _conv_decimal,
    Any: _identity,
    object: _identity,
}


_MISS: Any = object()
"""What a compiled builder returns when the payload is not the plain case it handles."""

Builder = Callable[[Mapping[str, Any]], Any]


def _undecided(data: Mapping[str, Any]) -> Any:
    return _MISS


class _Plan:
    """How to decode one dataclass: (name, converter, required) per init field, and
    ``fast``, a builder compiled from them for the common case (see ``_compile``)."""

    __slots__ = ("cls", "direct", "fast", "fields", "label", "names")

    def __init__(self, cls: type, label: str) -> None:
        self.cls = cls
        self.label = label
        self.fields: list[tuple[str, Converter, bool]] = []
        self.names: frozenset[str] = frozenset()
        self.fast: Builder = _undecided
        self.direct = False  # fast makes instances without calling cls: it cannot raise


_plans: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _plans.get(cls)
    if plan is not None:
        return plan
    label = getattr(cls, "event_type", cls.__qualname__)
    plan = _Plan(cls, label)
    _plans[cls] = plan  # registered first so recursive types terminate
    try:
        hints = typing.get_type_hints(cls)
        fields = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            fields.append((f.name, _converter(hints[f.name], f.name), required))
    except EventDefinitionError:
        del _plans[cls]
        raise
    except (NameError, TypeError, KeyError) as exc:
        del _plans[cls]
        raise EventDefinitionError(cls.__qualname__, f"cannot read field types: {exc}") from None
    plan.fields = fields
    plan.names = frozenset(name for name, _, _ in fields)
    plan.fast, plan.direct = _compile(plan)
    return plan


def _direct_setters(cls: type, names: list[str]) -> list[tuple[str, Any]] | None:
    """How to fill each field of an instance made with object.__new__, or None when
    skipping ``__init__`` could change the result: a __post_init__, a hand-written
    __init__ or __new__, a field __init__ does not take (init=False, InitVar), or a
    __setattr__ of the class's own on a class that is not frozen."""

    def owner(name: str) -> type:
        return next(k for k in cls.__mro__ if name in k.__dict__)

    init = owner("__init__").__dict__["__init__"]
    code = getattr(init, "__code__", None)
    params = getattr(cls, "__dataclass_params__", None)
    # dataclasses compiles the __init__ it writes; core.events writes its own for slots
    # events (it takes exactly the fields, the base ones as **kwargs, and when they are
    # all given only sets them)
    ours = bool(getattr(init, "__pubsub_plain_init__", False))
    if (
        code is None
        or not (ours or code.co_filename == "<string>")
        or hasattr(cls, "__post_init__")
        or owner("__new__") is not object
        or params is None
        or not (params.frozen or owner("__setattr__") is object)
    ):
        return None
    taken = code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]
    if not ours and sorted(taken) != sorted(names):
        return None
    if len(dataclasses.fields(cls)) != len(names):
        return None
    setters: list[tuple[str, Any]] = []
    for name in names:
        setter = slot_setter(cls, name)
        setters.append(("attr", name) if setter is None else ("slot", setter))
    return setters


def _compile(plan: _Plan) -> tuple[Builder, bool]:
    """A builder for the payload encode writes: exactly the init fields, every value
    already of a type its converter passes unchanged or converted without complaint.
    Anything else (a missing or unexpected field, a value the converter refuses) makes
    it return ``_MISS`` and ``_build`` does the work again, checking every step and
    naming the field. Values are read and checked in straight-line code, and the
    instance is made without the dataclass ``__init__`` where ``_direct_setters``
    allows it (``__init__`` would only set the same values again)."""
    names = [name for name, _, _ in plan.fields]
    ns: dict[str, Any] = {"MISS": _MISS, "FieldError": _FieldError, "cls": plan.cls}
    body = [f"    if len(data) != {len(names)}:", "        return MISS", "    try:"]
    for i, (name, conv, _) in enumerate(plan.fields):
        body.append(f"        v{i} = data[{name!r}]")
        if conv is _identity:
            continue
        unchanged, call = _SHORTCUTS.get(conv, ((), conv))
        ns[f"c{i}"] = call
        if len(unchanged) == 1:
            ns[f"t{i}"] = unchanged[0]
            body.append(f"        if type(v{i}) is not t{i}:")
            body.append(f"            v{i} = c{i}(v{i})")
        elif unchanged:
            tests = []
            for j, kind in enumerate(unchanged):
                ns[f"t{i}_{j}"] = kind
                tests.append(f"t is not t{i}_{j}")
            body.append(f"        t = type(v{i})")
            body.append(f"        if {' and '.join(tests)}:")
            body.append(f"            v{i} = c{i}(v{i})")
        else:
            body.append(f"        v{i} = c{i}(v{i})")
    body += ["    except (KeyError, FieldError):", "        return MISS"]
    setters = _direct_setters(plan.cls, names)
    if setters is None:
        body.append(f"    return cls({', '.join(f'{n}=v{i}' for i, n in enumerate(names))})")
    else:
        ns["new"], ns["setattr_"] = object.__new__, object.__setattr__
        body.append("    obj = new(cls)")
        for i, (how, setter) in enumerate(setters):
            if how == "slot":
                ns[f"s{i}"] = setter
                body.append(f"    s{i}(obj, v{i})")
            else:
                body.append(f"    setattr_(obj, {setter!r}, v{i})")
        body.append("    return obj")
    source = "\n".join(["def build(data):", *body])
    exec(compile(source, f"<codec builder for {plan.label}>", "exec"), ns)
    builder: Builder = ns["build"]
    return builder, setters is not None


def _converter(tp: Any, where: str) -> Converter:
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        non_none = tuple(a for a in args if a is not type(None))
        if len(non_none) == 1 and len(args) == 2:
            return _conv_optional(_converter(non_none[0], where))
        return _conv_union(tuple(_converter(a, where) for a in args), str(tp))
    if origin is typing.Literal:
        return _conv_literal(args)
    if origin is typing.Annotated:
        return _converter(args[0], where)
    if origin in (list, tuple, set, frozenset, dict) or tp in (list, tuple, set, frozenset, dict):
        return _container(origin or tp, args, where)
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return _conv_enum(tp)
        if dataclasses.is_dataclass(tp):
            return _conv_dataclass(tp)
    raise EventDefinitionError(where, f"field type {tp!r} is not supported by the codec")


def _container(origin: Any, args: tuple[Any, ...], where: str) -> Converter:
    if origin is dict:
        key, val = args if args else (str, Any)
        if key not in (str, Any):
            raise EventDefinitionError(where, "dict keys must be str to round-trip through JSON")
        return _conv_dict(_conv_str, _converter(val, where))
    item_tp = args[0] if args else Any
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if args == ((),):
            return _conv_fixed_tuple(())
        return _conv_fixed_tuple(tuple(_converter(a, where) for a in args))
    item = _converter(item_tp, where)
    if origin is list:
        return _conv_sequence(item, _identity, "an array")
    if origin is tuple:
        return _conv_sequence(item, tuple, "an array")
    if origin is set:
        return _conv_sequence(item, set, "an array")
    return _conv_sequence(item, frozenset, "an array")


def _conv_dataclass(cls: type) -> Converter:
    def conv(value: Any) -> Any:
        if type(value) is not dict:
            raise _bad(f"an object for {cls.__name__}", value)
        plan = _plans.get(cls) or _plan(cls)
        obj = plan.fast(value)
        return _build(plan, value) if obj is _MISS else obj

    return conv


def _build(plan: _Plan, data: Mapping[str, Any]) -> Any:
    """The checked path: every field converted and every problem named."""
    kwargs: dict[str, Any] = {}
    for name, conv, required in plan.fields:
        if name in data:
            try:
                kwargs[name] = conv(data[name])
            except _FieldError as err:
                err.path.insert(0, name)
                raise
        elif required:
            missing = _FieldError("is missing")
            missing.path.append(name)
            raise missing
    if len(kwargs) != len(data):
        extra = sorted(k for k in data if k not in plan.names)
        if extra:
            raise _FieldError(f"unexpected field(s) {', '.join(map(repr, extra))}")
    return plan.cls(**kwargs)


def from_dict(cls: type[E], data: Mapping[str, Any]) -> E:
    """Build ``cls`` from JSON-compatible data, checking every field."""
    if type(data) is not dict and not isinstance(data, Mapping):
        raise EventDecodeError(
            cls.event_type, None, f"expected an object, got {type(data).__name__}"
        )
    plan = _plans.get(cls) or _plan(cls)
    try:
        event: E = plan.fast(data)
        if event is _MISS:
            event = _build(plan, data)
    except _FieldError as err:
        raise EventDecodeError(cls.event_type, ".".join(err.path) or None, err.problem) from None
    except (TypeError, ValueError) as exc:  # the class's own __post_init__ validation
        raise EventDecodeError(cls.event_type, None, str(exc)) from None
    return event


# -- encoding -------------------------------------------------------------------------


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"Decimal {value} has no JSON form")
        return str(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"type {type(value).__name__} is not supported")


def _may_hold(tp: Any, kind: type, seen: set[Any]) -> bool:
    """Whether a field annotated ``tp`` can hold a value of ``kind`` anywhere inside."""
    if tp is kind or tp is Any or tp is object:
        return True
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if tp in seen:
            return False
        seen.add(tp)
        hints = typing.get_type_hints(tp)
        return any(_may_hold(hints[f.name], kind, seen) for f in dataclasses.fields(tp))
    return any(_may_hold(a, kind, seen) for a in get_args(tp) if a is not Ellipsis)


def _dataclasses_in(tp: Any) -> list[type]:
    """The dataclass types a value annotated ``tp`` may hold, directly or in containers."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return [tp]
    return [k for a in get_args(tp) if a is not Ellipsis for k in _dataclasses_in(a)]


def _orjson_writes_exactly(cls: type, seen: set[type]) -> bool:
    """Whether orjson's own walk of an instance of ``cls`` (and of every dataclass its
    fields may hold) writes exactly the init fields, which is what decoding takes.

    orjson reads a dataclass instance's ``__dict__`` when it has one and its class does
    not itself declare ``__slots__``, and otherwise every declared field, by attribute;
    either way it skips names that start with an underscore. So a class without slots
    whose fields live partly in a base's slots (an event class without ``slots=True``)
    would lose them, a field like ``_code`` would vanish, and an ``init=False`` field
    would be written for decoding to refuse. Such classes are encoded field by field
    instead (``_fields_of``)."""
    if cls in seen:
        return True
    seen.add(cls)
    fields = dataclasses.fields(cls)
    if any(not f.init or f.name.startswith("_") for f in fields):
        return False
    if cls.__dictoffset__ and "__slots__" not in cls.__dict__:
        # The __dict__ walk: every field must live there and nothing else may.
        params = getattr(cls, "__dataclass_params__", None)
        init = getattr(cls.__dict__.get("__init__"), "__code__", None)
        if (
            params is None
            or not params.frozen
            or hasattr(cls, "__post_init__")
            or init is None
            or init.co_filename != "<string>"
            or any(slot_setter(cls, f.name) is not None for f in fields)
            or any(hasattr(k.__dict__.get(f.name), "__set__") for k in cls.__mro__ for f in fields)
        ):
            return False
    hints = typing.get_type_hints(cls)
    return all(
        _orjson_writes_exactly(nested, seen)
        for f in fields
        for nested in _dataclasses_in(hints[f.name])
    )


_init_names: dict[type, tuple[str, ...]] = {}


def _fields_of(value: Any) -> dict[str, Any] | None:
    """A dataclass instance as the mapping of its init fields, or None if it is not one."""
    cls = type(value)
    names = _init_names.get(cls)
    if names is None:
        if not dataclasses.is_dataclass(cls):
            return None
        names = _init_names[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    return {name: getattr(value, name) for name in names}


def _default_by_fields(value: Any) -> Any:
    fields = _fields_of(value)
    return _default(value) if fields is None else fields


def _default_by_fields_exact_times(value: Any) -> Any:
    fields = _fields_of(value)
    return _default_exact_times(value) if fields is None else fields


class _Checks:
    """What encode looks at before orjson runs, per class. A field annotated exactly
    ``float`` (or ``datetime``) is checked in place; any other field that may hold one
    somewhere inside is searched. ``native`` says whether orjson's own walk of the
    dataclasses is exact (see ``_orjson_writes_exactly``)."""

    __slots__ = ("datetime_deep", "datetime_flat", "float_deep", "float_flat", "native")

    def __init__(self, cls: type) -> None:
        hints = typing.get_type_hints(cls)
        fields = [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]
        self.native = _orjson_writes_exactly(cls, set())
        self.float_flat = tuple(name for name, tp in fields if tp is float)
        self.float_deep = tuple(
            name for name, tp in fields if tp is not float and _may_hold(tp, float, set())
        )
        self.datetime_flat = tuple(name for name, tp in fields if tp is datetime)
        self.datetime_deep = tuple(
            name for name, tp in fields if tp is not datetime and _may_hold(tp, datetime, set())
        )


_checks: dict[type, _Checks] = {}


def _find(value: Any, bad: Callable[[Any], str | None], path: list[str]) -> str | None:
    """Depth-first search for a value ``bad`` complains about; fills ``path``."""
    problem = bad(value)
    if problem is not None:
        return problem
    items: Any
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple | set | frozenset):
        items = enumerate(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
    else:
        return None
    for key, item in items:
        path.append(str(key))
        problem = _find(item, bad, path)
        if problem is not None:
            return problem
        path.pop()
    return None


def _non_finite(value: Any) -> str | None:
    if type(value) is float and not math.isfinite(value):
        return f"{value!r} has no JSON form (it would be stored as null)"
    return None


def _odd_offset(value: Any) -> str | None:
    """A datetime whose UTC offset has seconds or microseconds: orjson would round the
    offset to the minute (and so move the instant)."""
    if isinstance(value, datetime):
        offset = value.utcoffset()
        if offset is not None and (offset.seconds % 60 or offset.microseconds):
            return "offset with seconds"
    return None


def _surrogate(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"string {text!r:.60} holds an unpaired surrogate at index {exc.start}; "
            "UTF-8 cannot carry it"
        )
    return None


def _not_json(value: Any) -> str | None:
    """What orjson refuses: integers beyond 64 bits, strings (values or keys) with
    unpaired surrogates."""
    if type(value) is int:
        if not _INT_MIN <= value <= _INT_MAX:
            return f"integer {value} is beyond the 64-bit range JSON readers accept"
        return None
    if isinstance(value, str):
        return _surrogate(value)
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, str):
                problem = _surrogate(key)
                if problem is not None:
                    return f"key: {problem}"
    return None


def _default_exact_times(value: Any) -> Any:
    """``_default`` for events holding a datetime orjson would round: every date, time
    and datetime is written by ``isoformat``, which keeps the offset's seconds."""
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, time):
        if value.tzinfo is not None:  # as orjson: the offset of a bare time is ambiguous
            raise TypeError("datetime.time must not have tzinfo set")
        return value.isoformat()
    return _default(value)


def _exact_times_needed(event: Event, checks: _Checks) -> bool:
    for name in checks.datetime_flat:
        value = getattr(event, name)
        if type(value) is datetime and value.tzinfo is UTC:
            continue
        if _odd_offset(value) is not None:
            return True
    for name in checks.datetime_deep:
        if _find(getattr(event, name), _odd_offset, []) is not None:
            return True
    return False


def encode(event: Event) -> bytes:
    """The event as orjson bytes; EventEncodeError for any value JSON would not carry
    faithfully."""
    cls = type(event)
    checks = _checks.get(cls)
    if checks is None:
        checks = _checks[cls] = _Checks(cls)
    for name in checks.float_flat:
        value = getattr(event, name)
        if type(value) is not float or not math.isfinite(value):
            path = [name]
            problem = _find(value, _non_finite, path)
            if problem is not None:
                raise EventEncodeError(cls.event_type, ".".join(path), problem)
    for name in checks.float_deep:
        path = [name]
        problem = _find(getattr(event, name), _non_finite, path)
        if problem is not None:
            raise EventEncodeError(cls.event_type, ".".join(path), problem)
    try:
        exact_times = _exact_times_needed(event, checks)
        if checks.native:
            if exact_times:
                return orjson.dumps(
                    event, default=_default_exact_times, option=orjson.OPT_PASSTHROUGH_DATETIME
                )
            return orjson.dumps(event, default=_default)
        if exact_times:
            return orjson.dumps(
                event,
                default=_default_by_fields_exact_times,
                option=orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME,
            )
        return orjson.dumps(
            event, default=_default_by_fields, option=orjson.OPT_PASSTHROUGH_DATACLASS
        )
    except orjson.JSONEncodeError as exc:
        path = []
        problem = _find(event, _not_json, path)
        if problem is None:
            problem = str(exc)
            path = []
        raise EventEncodeError(cls.event_type, ".".join(path) or None, problem) from None


def to_dict(event: Event) -> dict[str, Any]:
    """The event as JSON-compatible data (strings for datetimes, UUIDs and decimals)."""
    data: dict[str, Any] = orjson.loads(encode(event))
    return data


def decode_as(cls: type[E], payload: bytes | str) -> E:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(cls.event_type, None, f"payload is not JSON: {exc}") from None
    return from_dict(cls, data)


def decode(
    type_name: str,
    payload: bytes | str | Mapping[str, Any],
    *,
    version: int | None = None,
    registry: EventRegistry = default_registry,
) -> Event:
    """Decode a stored payload by its type name, upcasting older schema versions."""
    cls = registry.resolve(type_name)
    if type(payload) is bytes or isinstance(payload, bytes | str):
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise EventDecodeError(type_name, None, f"payload is not JSON: {exc}") from None
    else:
        data = dict(payload)
    if version is not None and version != cls.event_version:
        data = registry.upcast(type_name, version, data)
    plan = _plans.get(cls)
    if plan is not None and plan.direct and type(data) is dict:
        # The replay path: from_dict's fast step without its wrapping. A converter's
        # TypeError or ValueError is left to from_dict, which repeats the work and
        # reports it.
        try:
            built = plan.fast(data)
        except (TypeError, ValueError):
            built = _MISS
        if built is not _MISS:
            event: Event = built
            return event
    return from_dict(cls, data)
