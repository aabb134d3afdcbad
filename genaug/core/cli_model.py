"""Command-line options generated from settings models: a flag exists because a field declares it, nowhere else.

    class TrainOptions(Settings):          # what one invocation takes (not part of any recipe)
        where: ClassVar[str] = "flag"
        out: str | None = setting(None, "Run directory.", flag="--out")

    @command(app, "train", options=TrainOptions, recipe=TrainRecipe)   # help: the docstring of TrainOptions
    def train(opts: TrainOptions, overrides: dict) -> None: ...

Every field of `options` with a flag becomes an option with the field's default and help (a field with
`argument=True` a positional argument); every field of the `recipe` model (nested sections included) that declares a
flag becomes an option whose default is None ("the recipe's value"), collected into `overrides` as
{"data.batch_size": 64} for the recipe loader. Types come from the annotations; values are checked by the models
(one-line errors naming the flag), not by the CLI library. `fields_of(command)` tells the test which field each
option comes from.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, Union

import typer
from pydantic import BaseModel

from genaug.core.config import Settings, flag_of

#: the attribute a generated command carries: {parameter name: (model, dotted field name)}
FIELDS_ATTR = "__genaug_fields__"


def _cli_type(tp: Any) -> Any:
    """The type typer parses a field's value as (the model checks it afterwards)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _cli_type(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if any(typing.get_origin(a) in (list, tuple) for a in args):
            return list[str]
        has_literal = any(typing.get_origin(a) is Literal for a in args)
        if has_literal and bool in args and all(a is bool or typing.get_origin(a) is Literal for a in args):
            return str  # bool | Literal['auto']: typed as text, parsed by the model
        kinds = [_cli_type(a) for a in args]
        return kinds[0] if len(set(kinds)) == 1 else str
    if origin is Literal:
        values = typing.get_args(tp)
        return type(values[0]) if len({type(v) for v in values}) == 1 else str
    if origin in (list, tuple):
        (arg,) = typing.get_args(tp)[:1] or (str,)
        return list[_cli_type(arg)]
    if tp in (int, float, bool, str):
        return tp
    return str


def _help(field: Any, dotted: str | None) -> str:
    text = field.description or ""
    if dotted is not None:
        default = field.get_default(call_default_factory=True)
        shown = "" if default is None else f"; recipe default {default!r}"
        text = f"{text} (recipe key {dotted}{shown})".strip()
    return text


def recipe_flags(model: type[Settings], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, field) of every field of `model` and its sections that declares a flag."""
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            yield from recipe_flags(sub, f"{prefix}{name}.")  # type: ignore[arg-type]
        elif flag_of(field):
            yield f"{prefix}{name}", field


def _parameter(pname: str, field: Any, dotted: str | None) -> inspect.Parameter:
    flag = flag_of(field)
    tp = _cli_type(field.annotation)
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if dotted is not None:
        default: Any = None
    else:
        default = field.get_default(call_default_factory=True)
        if isinstance(default, (list, tuple)):
            default = list(default)
    required = dotted is None and field.is_required()
    if extra.get("argument"):
        info = typer.Argument(... if required else default, help=_help(field, dotted), show_default=False)
    else:
        info = typer.Option(... if required else default, *flag.split(" "), help=_help(field, dotted))
    return inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=tp)


def command(
    app: typer.Typer,
    name: str,
    *,
    options: type[Settings],
    recipe: type[Settings] | None = None,
    **typer_kw: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `handler(opts, overrides)` as the command `name`: its help is the options model's docstring, its
    options are generated from the two models."""
    import inspect as _inspect

    help = _inspect.cleandoc(options.__doc__ or "")  # noqa: A001 - click's word

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        params: list[inspect.Parameter] = []
        fields: dict[str, tuple[type[Settings], str]] = {}
        for fname, field in options.model_fields.items():
            if not flag_of(field):
                raise TypeError(f"{options.__name__}.{fname} declares no flag: every option field needs one")
            params.append(_parameter(fname, field, None))
            fields[fname] = (options, fname)
        if recipe is not None:
            for dotted, field in recipe_flags(recipe):
                pname = "recipe__" + dotted.replace(".", "__")
                params.append(_parameter(pname, field, dotted))
                fields[pname] = (recipe, dotted)

        def run(**kwargs: Any) -> Any:
            given = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
            opts = options.parse({k: v for k, v in given.items() if not k.startswith("recipe__")})
            overrides = {
                fields[k][1]: v
                for k, v in given.items()
                if k.startswith("recipe__") and v is not None and v != []
            }
            return handler(opts, overrides)

        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        run.__name__ = handler.__name__
        run.__doc__ = handler.__doc__
        setattr(run, FIELDS_ATTR, fields)
        app.command(name, help=help, **typer_kw)(run)
        return run

    return register


def parse_sets(items: list[str] | None) -> dict:
    """`--set a.b=VALUE` pairs as a dotted-key override dict (values parsed as YAML scalars)."""
    import yaml

    from genaug.core.errors import GenaugError

    out = {}
    for item in items or []:
        if "=" not in item:
            raise GenaugError(f"--set {item!r} must look like section.key=value (e.g. --set method_args.lambd=0.01)")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def flag_name(flag: str) -> str:
    """The Python keyword of a flag: --batch-size -> batch_size, --compile/--no-compile -> compile."""
    return flag.split("/")[0].split(" ")[0].lstrip("-").replace("-", "_")


def split_settings(
    options: type[Settings], recipe: type[Settings] | None, given: dict[str, Any], what: str
) -> tuple[Any, dict[str, Any]]:
    """Python keyword settings (the command's flags by name) as (options object, {dotted recipe key: value}).

    The Python face of a command takes exactly what its command line takes, by the same declarations: a keyword is an
    options field or the name of a recipe field's flag; anything else is a one-line error naming the closest one.
    """
    from genaug.core.config import close_key
    from genaug.core.errors import GenaugError

    by_name = {flag_name(flag_of(f) or ""): dotted for dotted, f in recipe_flags(recipe)} if recipe else {}
    opts, overrides = {}, {}
    for key, value in given.items():
        if key in options.model_fields:
            opts[key] = list(value) if isinstance(value, tuple) else value
        elif key in by_name:
            if value is not None:
                overrides[by_name[key]] = list(value) if isinstance(value, tuple) else value
        else:
            valid = [*options.model_fields, *by_name]
            raise GenaugError(f"{what}() got an unknown setting {key!r}{close_key(key, valid)}")
    return options.parse(opts), overrides


def fields_of(callback: Callable[..., Any]) -> dict[str, tuple[type[Settings], str]] | None:
    """The {parameter: (model, dotted field)} map of a command built by `command`, or None for another command."""
    return getattr(callback, FIELDS_ATTR, None)
