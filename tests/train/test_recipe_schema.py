"""Training recipes as a typed schema: every bad key or type is one line naming the key (and the closest valid one),
exit status 2, before any work starts; the resolved recipe holds every default."""

from __future__ import annotations

import pytest
import yaml

from genaug.cli import main
from genaug.core.errors import GenaugError
from genaug.core.recipes import available, load_recipe
from genaug.train.recipe import validate_train_recipe

BAD_SETS = [
    ("optim.wieght_decay=0.5", "unknown recipe key optim.wieght_decay (did you mean optim.weight_decay?)"),
    ("optimm.base_lr=0.1", "unknown recipe key optimm (did you mean optim?)"),
    ("optim.weight_decay=abc", "recipe key optim.weight_decay must be a number"),
    ("data.batch_size=1.5", "--batch-size (recipe key data.batch_size) must be an integer"),
    ("loop.compile=maybe", "--compile (recipe key loop.compile) must be true or false"),
    ("optim.name=adam", "optim.name must be one of 'lars', 'sgd', 'adamw'"),
    ("optim.lr=0.1", "optim.lr is now optim.base_lr"),
    ("loop.epochs=10", "loop.epochs is now schedule.epochs"),
    ("method_args.lamda=0.1", "method_args.lamda for method 'barlow' (did you mean method_args.lambd?)"),
    ("method_args.lambd=abc", "method_args.lambd must be a number"),
    ("views.sise=32", "views: unknown key(s) ['sise']"),
    ("optim=3", "recipe key optim must be a mapping"),
    ("backbone.name=resnet9", "backbone.name must be one of"),
    ("data.batch_size=0", "--batch-size (recipe key data.batch_size) must be at least 1"),
    ("schedule.warmup_epochs=[1, 2]", "schedule.warmup_epochs must be a number"),
    ("data.mix_views=first", "--mix-views (recipe key data.mix_views) must be one of 'each', 'second'"),
]


@pytest.mark.parametrize(("setting", "message"), BAD_SETS)
def test_bad_key_or_type_is_one_line_and_status_2(setting, message, tmp_path, capsys):
    rc = main(["train", "--method", "barlow", "--shards", str(tmp_path), "--set", setting])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("genaug: error: "), err
    assert message in err, err


def test_a_typo_in_a_recipe_file_is_caught(tmp_path, capsys):
    bad = tmp_path / "mine.yaml"
    bad.write_text(yaml.safe_dump({"method": "simclr", "schedul": {"epochs": 10}}))
    assert main(["train", "--method", str(bad), "--shards", str(tmp_path)]) == 2
    assert "unknown recipe key schedul (did you mean schedule?)" in capsys.readouterr().err


@pytest.mark.parametrize("method", available("trainers"))
def test_every_shipped_recipe_validates_in_one_dialect(method):
    """Shipped recipes use the one dialect (no renamed keys) and resolve with every default filled in."""
    raw = load_recipe("trainers", method)
    out = validate_train_recipe(raw)
    assert out["optim"]["base_lr"] > 0 and out["schedule"]["epochs"] > 0
    assert set(out["loop"]) >= {"precision", "grad_accum", "ckpt_every"}  # defaults written out
    with pytest.raises(GenaugError):  # the checker itself is not lenient
        validate_train_recipe({**raw, "optim": {**(raw.get("optim") or {}), "nope": 1}})


def test_method_arguments_get_the_class_defaults():
    out = validate_train_recipe({"method": "barlow", "method_args": {"lambd": "5e-3"}})
    assert out["method_args"]["lambd"] == 0.005  # YAML 1.1 reads 5e-3 as a string; the schema makes it a number
    assert out["method_args"]["proj_layers"] == 3  # BarlowTwins' own default, written into the resolved recipe
