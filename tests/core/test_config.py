"""Typed settings (genaug.core.config, genaug.core.cli_model): one declaration gives the recipe key, its errors,
the flag, the Python keyword and the typed read; the worked example of docs/design.md is built here for real."""

from __future__ import annotations

from typing import ClassVar, Literal

import pytest
import typer
from typer.testing import CliRunner

from genaug.core.cli_model import command, fields_of, split_settings
from genaug.core.config import Number, Probability, Settings, check_value, setting
from genaug.core.errors import GenaugError
from genaug.train.recipe import Data, TrainRecipe


class DataWithDropLast(Data):
    """The worked example of docs/design.md ("Where a setting lives"): one field is the whole declaration."""

    drop_last: bool = setting(True, "Drop the last incomplete batch of an epoch.", flag="--drop-last/--keep-last")


class RecipeWithDropLast(TrainRecipe):
    data: DataWithDropLast = setting(factory=DataWithDropLast)


class Opts(Settings):
    where: ClassVar[str] = "flag"
    method: str = setting("simclr", "The method.", flag="--method")


def _app() -> tuple[typer.Typer, list]:
    app, calls = typer.Typer(), []

    @command(app, "train", options=Opts, recipe=RecipeWithDropLast)
    def _train(opts: Opts, overrides: dict) -> None:
        calls.append((opts, overrides))

    @app.command("other")
    def _other() -> None:  # a second command, so typer keeps `train` as a subcommand
        return None

    return app, calls


def test_the_worked_example_is_one_edit():
    app, calls = _app()
    res = CliRunner().invoke(app, ["train", "--keep-last", "--batch-size", "8"])
    assert res.exit_code == 0, res.output
    assert calls[-1][1] == {"data.drop_last": False, "data.batch_size": 8}
    assert "--drop-last" in CliRunner().invoke(app, ["train", "--help"]).output
    opts, flags = split_settings(Opts, RecipeWithDropLast, {"drop_last": False, "lr": 0.5}, "train")
    assert flags == {"data.drop_last": False, "optim.base_lr": 0.5}
    rec = RecipeWithDropLast.parse({"method": "simclr", "data": {"drop_last": False}})
    assert rec.data.drop_last is False and rec.as_recipe()["data"]["drop_last"] is False
    assert RecipeWithDropLast.parse({"method": "simclr"}).as_recipe()["data"]["drop_last"] is True
    with pytest.raises(GenaugError, match=r"^--drop-last \(recipe key data.drop_last\) must be true or false, got 'x'"):
        RecipeWithDropLast.parse({"method": "simclr", "data": {"drop_last": "x"}})
    fields = fields_of(app.registered_commands[0].callback)
    assert fields["recipe__data__drop_last"] == (RecipeWithDropLast, "data.drop_last")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"data": {"batch_size": 0}}, "--batch-size (recipe key data.batch_size) must be at least 1, got 0"),
        ({"data": {"batch_size": "5"}}, "--batch-size (recipe key data.batch_size) must be an integer, got '5'"),
        ({"data": {"batch_sise": 5}}, "unknown recipe key data.batch_sise (did you mean data.batch_size?)"),
        ({"optim": {"lr": 1}}, "recipe key optim.lr is now optim.base_lr: rename it in the recipe or --set"),
        ({"optim": {"betas": [0.9, "b"]}}, "recipe key optim.betas[1] must be a number, got 'b'"),
        ({"optim": {"momentum": 1.5}}, "recipe key optim.momentum must lie in [0, 1], got 1.5"),
        ({"optim": {"base_lr": 0}}, "--lr (recipe key optim.base_lr) must be above 0, got 0"),
        ({"optim": {"base_lr": float("nan")}}, "--lr (recipe key optim.base_lr) must be a finite number, got nan"),
        ({"backbone": {"cifar_stem": "m"}}, "recipe key backbone.cifar_stem must be true or false or one of 'auto'"),
        ({"run": {"p": 1.5}}, "--p must lie in [0, 1], got 1.5"),
        ({"run": {"gen": "a,b,a"}}, "--gen names column a more than once"),
        ({"schedule": 3}, "recipe key schedule must be a mapping of keys to values, got 3"),
    ],
)
def test_a_bad_value_is_one_line_naming_flag_and_key(doc, message):
    with pytest.raises(GenaugError) as e:
        TrainRecipe.parse({"method": "simclr", **doc})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_yaml_numbers_and_paths_are_read_as_the_user_meant():
    from pathlib import Path

    rec = TrainRecipe.parse({"method": "simclr", "optim": {"base_lr": "1e-4"}, "run": {"shards": Path("/x")}})
    assert rec.optim.base_lr == 1e-4 and rec.run.shards == "/x"
    assert TrainRecipe.parse({"method": "simclr", "run": {"gen": "sd, icgan"}}).run.gen == ["sd", "icgan"]


def test_p_is_one_type_wherever_it_enters():
    from genaug.data.mixing import MixPolicy

    assert check_value(Probability, "0.25", "--p") == 0.25
    for where in (lambda: check_value(Probability, 2, "--p"), lambda: MixPolicy(p=1.5)):
        with pytest.raises(GenaugError, match=r"^--p must lie in \[0, 1\], got 1?\.?[25]"):
            where()


def test_options_model_fields_all_become_flags_and_are_strict():
    class Bad(Settings):
        where: ClassVar[str] = "flag"
        n: int = setting(1, "n")  # no flag: an options field must have one

    with pytest.raises(TypeError, match="declares no flag"):
        command(typer.Typer(), "x", options=Bad)(lambda opts, overrides: None)

    class Good(Settings):
        where: ClassVar[str] = "flag"
        mode: Literal["a", "b"] = setting("a", "mode", flag="--mode")
        rate: Number = setting(1.0, "rate", flag="--rate", gt=0)

    with pytest.raises(GenaugError, match=r"^--mode must be one of 'a', 'b', got 'c'$"):
        Good.parse({"mode": "c"})
    with pytest.raises(GenaugError, match=r"^--rate must be above 0, got -1"):
        Good.parse({"rate": -1})
