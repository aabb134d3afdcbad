"""Typed settings: each setting is declared once, as a field of a pydantic model, and everything else derives from it.

    class Data(Settings):
        batch_size: int = setting(256, "Per-process batch size.", flag="--batch-size", ge=1)

From that one line come: the recipe key `data.batch_size` with its type, default and bounds; the one-line error of
a bad value (`--batch-size (recipe key data.batch_size) must be at least 1, got 0`, exit 2); the `--batch-size`
option of the command whose model holds it (genaug.core.cli_model builds the typer options from the fields); and
the typed attribute the code reads (`cfg.data.batch_size`, never `recipe.get("batch_size", 256)`).

pydantic v2 validates (a maintained library, fast, and its error records carry the location and the bound that
failed, which is what the one-line messages need); genaug adds only the translation of its errors into one line
naming the key, the closest valid key for a typo, and the flag. Models are strict: "5" is not an integer and 1.5 is
not an int; the one leniency is that a number written as a string (YAML 1.1 reads `1e-4` as a string) is a number.
"""

from __future__ import annotations

import difflib
import functools
import os
import types
import typing
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PydanticSchemaGenerationError,
    ValidationError,
    create_model,
)

from genaug.core.errors import GenaugError

S = TypeVar("S", bound="Settings")


def _yaml_number(value: Any) -> Any:
    """A number written as a string (YAML 1.1 reads 1e-4 as one) as a float; other values unchanged."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


#: a float field: also accepts integers and numbers written as strings; never NaN or infinity
Number = Annotated[float, BeforeValidator(_yaml_number)]

#: a path or URL kept as text (a pathlib.Path given from Python becomes its string)
PathText = Annotated[str, BeforeValidator(lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v)]


def lenient(tp: Any) -> Any:
    """A type hint with every `float` read as Number (so a plug-in's `lambd: float` takes `5e-3` from YAML)."""
    if tp is float:
        return Number
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return Union[tuple(lenient(a) for a in typing.get_args(tp))]  # noqa: UP007 - built from a tuple
    if origin is list:
        args = typing.get_args(tp)
        return list[lenient(args[0])] if args else list
    return tp


def setting(
    default: Any = ...,
    help: str = "",  # noqa: A002 - the word every CLI library uses
    flag: str | None = None,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    argument: bool = False,
    factory: Any = None,
) -> Any:
    """A model field: its default, help text, bounds and (when it has one) the command-line flag that sets it."""
    extra = {"flag": flag} if flag else {}
    if argument:
        extra["argument"] = True
    kw: dict[str, Any] = {"description": help, "ge": ge, "gt": gt, "le": le}
    if extra:
        kw["json_schema_extra"] = extra
    if factory is not None:
        return Field(default_factory=factory, **kw)
    return Field(default, **kw)


def flag_of(field: Any) -> str | None:
    """The command-line flag a model field declares (None: recipe-only, or set through --set)."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return extra.get("flag")


def command_words(opts: BaseModel, names: typing.Iterable[str], always: typing.Collection[str] = ()) -> list[str]:
    """The command-line words that give `opts`'s fields `names`, in that order: each field whose value differs from
    its declared default (or is named in `always`) as its flag and value (a positional argument as its value alone, a
    switch `--on/--off` as the side it is on, a list as its flag once per item); unquoted."""
    fields = type(opts).model_fields
    words: list[str] = []
    for name in names:
        field, value = fields[name], getattr(opts, name)
        default = field.get_default(call_default_factory=True)
        if value is None or (name not in always and _same_value(value, default)):
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        flag = flag_of(field)
        if extra.get("argument") or flag is None:
            words.append(os.fspath(value) if isinstance(value, os.PathLike) else str(value))
        elif isinstance(value, bool):
            on, _, off = flag.partition("/")
            words += [on] if value else [off] if off else []
        elif isinstance(value, (list, tuple)):
            for v in value:
                words += [flag, str(v)]
        else:
            words += [flag, str(value)]
    return words


def _same_value(value: Any, default: Any) -> bool:
    if isinstance(value, (list, tuple)) or isinstance(default, (list, tuple)):
        return list(value or []) == list(default or [])
    return value == default


def close_key(key: str, valid: list[str], prefix: str = "") -> str:
    """' (did you mean X?)' for the valid key closest to `key`, or a list of the valid keys."""
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if near:
        return f" (did you mean {prefix}{near[0]}?)"
    return f" (valid keys: {', '.join(sorted(valid))})" if valid else ""


def type_name(tp: Any) -> str:
    """How an error message names a type hint (`an integer`, `one of 'a', 'b'`, `a list of a number`)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return type_name(typing.get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {type_name(args[0])}" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a mapping of keys to values"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _model_of(tp: Any) -> type[Settings] | None:
    """The Settings class a field's annotation holds (directly or in an Optional), else None."""
    if isinstance(tp, type) and issubclass(tp, Settings):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            if isinstance(arg, type) and issubclass(arg, Settings):
                return arg
    return None


def _bounds(field: Any) -> tuple[Any, Any, bool]:
    lo = hi = None
    above = False
    for m in field.metadata:
        if getattr(m, "ge", None) is not None:
            lo = m.ge
        if getattr(m, "gt", None) is not None:
            lo, above = m.gt, True
        if getattr(m, "le", None) is not None:
            hi = m.le
    return lo, hi, above


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() and abs(x) < 1e15 else str(x)


class Settings(BaseModel):
    """A section of settings: strict types, no unknown keys, finite numbers; errors are one line naming the key."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=True)

    #: how errors name a field: "recipe" (recipe key section.key, then the flag) or "flag" (the flag only)
    where: ClassVar[str] = "recipe"
    #: keys of older recipes and where they live now (an error says so instead of guessing)
    renamed: ClassVar[dict[str, str]] = {}

    @classmethod
    def parse(cls: type[S], doc: Any, where: str = "") -> S:
        """`doc` (a mapping, None = every default) checked and completed, or a one-line GenaugError."""
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise GenaugError(f"recipe key {where or cls.__name__} must be a mapping of keys to values, got {doc!r}")
        cls._check_renamed(doc, "")
        try:
            return cls.model_validate(doc)
        except ValidationError as e:
            raise GenaugError(cls._one_line(e, where)) from None

    @classmethod
    def _check_renamed(cls, doc: dict, prefix: str) -> None:
        for key, value in doc.items():
            full = f"{prefix}{key}"
            if full in cls.renamed and key not in cls.model_fields:
                raise GenaugError(f"recipe key {full} is now {cls.renamed[full]}: rename it in the recipe or --set")
            if isinstance(value, dict) and key in cls.model_fields and _model_of(cls.model_fields[key].annotation):
                cls._check_renamed(value, f"{full}.")

    @classmethod
    def _one_line(cls, err: ValidationError, where: str) -> str:
        """The first error of a pydantic ValidationError as one line naming the key, the flag and what is valid."""
        e = err.errors()[0]
        model: type[Settings] | None = cls
        parts: list[str] = [where] if where else []
        field = None
        tp: Any = None
        for step in e["loc"]:
            if isinstance(step, int):
                parts[-1] = f"{parts[-1]}[{step}]"
                args = typing.get_args(tp)
                tp = args[0] if args else Any
                continue
            if model is not None and step in model.model_fields:
                field = model.model_fields[step]
                tp = field.annotation
                parts.append(step)
                model = _model_of(tp)
            elif model is not None and e["type"] == "extra_forbidden":
                parts.append(str(step))
            # else: a union member's tag (`bool`, `literal['auto']`): the field's own type names it
        dotted = ".".join(parts)
        if e["type"] == "extra_forbidden":
            parent = cls._model_at(parts[:-1] if not where else parts[1:-1])
            valid = list(parent.model_fields) if parent is not None else []
            prefix = ".".join(parts[:-1])
            return f"unknown recipe key {dotted}{close_key(parts[-1], valid, f'{prefix}.' if prefix else '')}"
        flag = flag_of(field) if field is not None else None
        kind = cls._where_of(parts, where)
        short = flag.split("/")[0] if flag else None
        if short:
            name = short if kind == "flag" else f"{short} (recipe key {dotted})"
        else:
            name = f"recipe key {dotted}"
        got = e.get("input")
        if e["type"] == "missing":
            return f"{name} is required"
        if _model_of(tp) is not None and e["type"] in ("model_type", "model_attributes_type"):
            return f"{name} must be a mapping of keys to values, got {got!r}"
        if e["type"] in ("greater_than_equal", "greater_than", "less_than_equal", "less_than") and field is not None:
            lo, hi, above = _bounds(field)
            if lo is not None and hi is not None and not above:
                rule = f"must lie in [{_num(lo)}, {_num(hi)}]"
            elif e["type"].startswith("greater"):
                rule = f"must be {'above' if above else 'at least'} {_num(lo)}"
            else:
                rule = f"must be at most {_num(hi)}"
            return f"{name} {rule}, got {got!r}"
        if e["type"] == "finite_number":
            return f"{name} must be a finite number, got {got!r}"
        if e["type"] == "value_error":  # a validator's own sentence; it names the flag itself when it starts with one
            msg = e["msg"].removeprefix("Value error, ")
            return msg if msg.startswith("--") else f"{name}: {msg}"
        return f"{name} must be {type_name(tp)}, got {got!r}"

    @classmethod
    def _model_at(cls, parts: list[str]) -> type[Settings] | None:
        model: type[Settings] | None = cls
        for p in parts:
            if model is None or p not in model.model_fields:
                return None
            model = _model_of(model.model_fields[p].annotation)
        return model

    @classmethod
    def _where_of(cls, parts: list[str], where: str) -> str:
        model: type[Settings] | None = cls
        kind = cls.where
        for p in parts[1:] if where else parts:
            if model is None or p not in model.model_fields:
                break
            kind = model.where
            model = _model_of(model.model_fields[p].annotation)
        return model.where if model is not None else kind

    def as_recipe(self) -> dict:
        """The settings as the plain mapping a recipe file holds (every default written out)."""
        return self.model_dump(mode="python")


class _FlagOnly(Settings):
    where: ClassVar[str] = "flag"


@functools.lru_cache(maxsize=256)
def _one_field(tp: Any, name: str) -> type[Settings] | None:
    try:
        return create_model("One", __base__=_FlagOnly, v=(tp, setting(..., flag=name)))
    except (PydanticSchemaGenerationError, TypeError):  # a plug-in's hint pydantic cannot check (a torch type)
        return None


def check_value(tp: Any, value: Any, name: str) -> Any:
    """`value` checked against a type hint (e.g. Probability) by the same rules as a model field; errors start
    with `name` (a flag such as --p, or `recipe key method_args.lambd`)."""
    model = _one_field(tp, name)
    return value if model is None else model.parse({"v": value}).v


#: a probability (p, the share of views replaced by variants): one declaration, checked wherever it enters
Probability = Annotated[Number, Field(ge=0.0, le=1.0)]
