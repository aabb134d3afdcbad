"""Every option of a converted command comes from exactly one field of its settings models, and every field of its
options model (and every field of its recipe model that declares a flag) is an option: a setting cannot exist on
the command line and not in the model, or the other way round (issue 23, "one declaration per setting")."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from genaug.cli import app
from genaug.core.cli_model import command, fields_of, recipe_flags
from genaug.core.config import Settings, flag_of, setting

#: the commands whose options are generated from settings models (genaug.core.cli_model.command); a command built
#: that way must be listed here, and a listed one must be built that way
CONVERTED = [
    "train",
    "generate",
    "ingest",
    "score",
    "fit-generator",
    "eval linear",
    "eval knn",
    "eval ood",
    "eval similarity",
    "eval report",
    "inspect",
    "verify",
    "index",
    "demo",
    "export",
]


def leaf_commands(cmd: Any, prefix: str = "") -> dict[str, Any]:
    """{'eval linear': command, ...}: every click command of a group, subcommands by their full name."""
    if hasattr(cmd, "commands"):  # a group (click's, or the one typer vendors, whose classes differ)
        out: dict[str, Any] = {}
        for name, sub in cmd.commands.items():
            out.update(leaf_commands(sub, f"{prefix} {name}".strip()))
        return out
    return {prefix: cmd}


def problems(name: str, cmd: Any) -> list[str]:
    """What breaks 'one option per field, one field per option' in command `name` (empty: nothing)."""
    fields = fields_of(cmd.callback)
    if fields is None:
        return [f"{name}: not built from settings models (genaug.core.cli_model.command)"]
    bad = []
    seen: dict[tuple[type, str], str] = {}
    for param in cmd.params:
        if param.name == "help":
            continue
        if param.name not in fields:
            bad.append(f"{name}: option {'/'.join(param.opts)} comes from no model field")
            continue
        model, dotted = fields[param.name]
        if (model, dotted) in seen:
            bad.append(f"{name}: {model.__name__}.{dotted} gives two options, {seen[model, dotted]} and {param.name}")
        seen[model, dotted] = param.name
        field = model.model_fields[dotted] if "." not in dotted else dict(recipe_flags(model))[dotted]
        flag = flag_of(field)
        if param.param_type_name == "option" and not set(flag.replace("/", " ").split()) <= set(
            param.opts + param.secondary_opts
        ):
            bad.append(f"{name}: option {param.opts} is not the flag {flag} its field {dotted} declares")
    params = {p.name for p in cmd.params}
    for model in {m for m, _ in fields.values()}:
        expected = {f"recipe__{d.replace('.', '__')}" for d, _ in recipe_flags(model)}
        if any(not k.startswith("recipe__") and m is model for k, (m, _) in fields.items()):
            expected = set(model.model_fields)  # an options model: every field is an option
        for missing in sorted(expected - params):
            bad.append(f"{name}: field {model.__name__}.{missing} is no option of the command")
    return bad


@pytest.fixture(scope="module")
def commands() -> dict[str, Any]:
    return leaf_commands(typer.main.get_command(app))


@pytest.mark.parametrize("name", CONVERTED)
def test_each_option_comes_from_exactly_one_field(commands, name):
    assert name in commands, f"no command `genaug {name}`"
    assert not problems(name, commands[name])


def test_every_command_is_built_from_models(commands):
    """Every command of the CLI is listed (and so checked above): a new plain typer command fails here."""
    assert sorted(commands) == sorted(CONVERTED)


#: recipe fields without a flag of their own, and how a user reaches them
RECIPE_ONLY = {
    # fit-generator: architecture and schedule details of the small UNet, set from Python (fit_config(...)) and
    # recorded in fit.json; --widths is the options model's text form of `widths`
    "fit-generator": {"widths", "layers_per_block", "norm_groups", "warmup", "train_timesteps", "beta_schedule"},
}


def test_every_recipe_field_is_reachable(commands):
    """A recipe field without a flag is reached by the command's --set (train, generate), or documented above."""
    for name, cmd in commands.items():
        fields = fields_of(cmd.callback)
        recipes = {m for k, (m, _) in fields.items() if k.startswith("recipe__")}
        has_set = "sets" in fields and fields["sets"][1] == "sets"
        for model in recipes:
            flagged = {d for d, _ in recipe_flags(model)}
            top = {n for n, f in model.model_fields.items() if not flag_of(f)} - {d.split(".")[0] for d in flagged}
            unreached = set() if has_set else top - RECIPE_ONLY.get(name, set())
            assert not unreached, f"{name}: recipe fields {sorted(unreached)} have no flag and no --set"


class _Opts(Settings):
    where = "flag"
    size: int = setting(8, "Side.", "--size", ge=1)


def test_the_walker_sees_a_plain_option_and_a_missing_field():
    """The check itself can fail: an option no field declares, and a field that is no option, are both reported."""
    demo = typer.Typer()

    @command(demo, "one", options=_Opts)
    def one(opts: _Opts, overrides: dict) -> None:
        print(opts.size)

    @demo.command("two")
    def two(x: int = typer.Option(1, "--x")) -> None:
        print(x)

    cmds = leaf_commands(typer.main.get_command(demo))
    assert not problems("one", cmds["one"])
    assert problems("two", cmds["two"]) == ["two: not built from settings models (genaug.core.cli_model.command)"]
    cmd = cmds["one"]
    cmd.params.append(cmds["two"].params[0])  # a plain typer option added beside the model's
    assert any("--x comes from no model field" in p for p in problems("one", cmd))
    cmd.params[:] = [p for p in cmd.params if p.name != "size"]  # the field --size lost its option
    assert any("_Opts.size is no option" in p for p in problems("one", cmd))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("ingest", "--per-shard must lie in [1, 1000000], got 0"),
        ("score", "--batch-size must be at least 1, got 0"),
        ("fit", "--size must be at least 4, got 3"),
        ("export", "--format must be one of 'timm', 'torchvision', got 'onnx'"),
    ],
)
def test_the_python_faces_check_values_by_the_same_declaration(tmp_path, call, message):
    """ingest(), score(), fit_config() and export_backbone() refuse a bad value with the line the flag gets, before
    they read anything (the set named here does not exist)."""
    from genaug.core.errors import GenaugError

    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(GenaugError) as e:
        if call == "ingest":
            from genaug.ingest.run import ingest

            ingest(nowhere, tmp_path / "set", per_shard=0, progress=False)
        elif call == "score":
            from genaug.score.run import score

            score(nowhere, "tiny", batch_size=0, progress=False)
        elif call == "fit":
            from genaug.fit.run import fit_config

            fit_config(size=3)
        else:
            from genaug.export import export_backbone

            export_backbone(nowhere, "onnx")
    assert str(e.value) == message
