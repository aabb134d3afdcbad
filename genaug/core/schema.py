"""Typed recipe sections: dataclasses whose fields say each key's type and default, and one validator for them.

`validate(doc, Section, "optim")` checks every key of a mapping against the dataclass: an unknown key is an error
naming the closest valid one, a value of the wrong type an error naming the type; missing keys get the defaults.
The result is a plain dict (what recipes are written as), with every default filled in.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, Union

from genaug.core.errors import GenaugError


def bounded(default: Any, lo: float | None = None, hi: float | None = None, above: bool = False) -> Any:
    """A dataclass field whose numeric value must lie in [lo, hi] (or above lo when `above`)."""
    return dataclasses.field(default=default, metadata={"lo": lo, "hi": hi, "above": above})


def _check_bounds(value: Any, meta: Any, where: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    lo, hi, above = meta.get("lo"), meta.get("hi"), meta.get("above", False)
    if lo is not None and (value <= lo if above else value < lo):
        raise GenaugError(f"recipe key {where} must be {'above' if above else 'at least'} {lo}, got {value}")
    if hi is not None and value > hi:
        raise GenaugError(f"recipe key {where} must be at most {hi}, got {value}")


def close_key(key: str, valid: list[str], prefix: str = "") -> str:
    """' (did you mean X?)' for the valid key closest to `key`, or a list of the valid keys."""
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if near:
        return f" (did you mean {prefix}{near[0]}?)"
    return f" (valid keys: {', '.join(sorted(valid))})" if valid else ""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` checked against type hint `tp` (numbers as strings such as 1e-4 become floats); raises naming `where`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg, where)
            except GenaugError:
                continue
        raise GenaugError(f"recipe key {where} must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise GenaugError(f"recipe key {where} must be {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):
                raise GenaugError(f"recipe key {where} must be a finite number, got {value!r}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (list, tuple)):
            (arg,) = typing.get_args(tp)[:1] or (Any,)
            return [coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            return dict(value)
    elif dataclasses.is_dataclass(tp):
        return validate(value, tp, where)
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"schema type {tp!r} of {where} is not supported")
    raise GenaugError(f"recipe key {where} must be {_type_name(tp)}, got {value!r}")


def validate(doc: Any, section: type, where: str, renamed: dict[str, str] | None = None) -> dict:
    """The mapping `doc` checked against dataclass `section` and completed with its defaults, as a plain dict."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise GenaugError(f"recipe key {where} must be a mapping of keys to values, got {doc!r}")
    hints = typing.get_type_hints(section)
    fields = {f.name: f for f in dataclasses.fields(section)}
    prefix = f"{where}." if where else ""
    for key in doc:
        if key not in fields:
            full = f"{prefix}{key}"
            if renamed and full in renamed:
                raise GenaugError(f"recipe key {full} is now {renamed[full]}: rename it in the recipe or --set")
            raise GenaugError(f"unknown recipe key {full}{close_key(str(key), list(fields), prefix)}")
    out: dict = {}
    for name, f in fields.items():
        if name in doc and dataclasses.is_dataclass(hints[name]):
            out[name] = validate(doc[name], hints[name], f"{prefix}{name}", renamed)
        elif name in doc:
            out[name] = coerce(doc[name], hints[name], f"{prefix}{name}")
            _check_bounds(out[name], f.metadata, f"{prefix}{name}")
        elif f.default is not dataclasses.MISSING:
            out[name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            made = f.default_factory()  # type: ignore[misc]
            out[name] = validate({}, hints[name], f"{prefix}{name}") if dataclasses.is_dataclass(made) else made
        else:
            raise GenaugError(f"recipe key {prefix}{name} is required")
    return out
