"""Each built-in method declares its arguments once, as a typed model (ssl/methods/args.py): every field has help
text, the defaults are the published values the constructors had, and a bad key, type or bound is one line naming
`method_args.KEY`, exit status 2."""

from __future__ import annotations

import hashlib
import json

import pytest
from torch import nn

from genaug.cli import main
from genaug.core.errors import GenaugError
from genaug.ssl.methods import METHODS, build_method
from genaug.ssl.methods.args import MethodArgs, args_model
from genaug.train.recipe import method_arguments

#: the defaults of every built-in method as its constructor signature declared them before the typed models
#: (recorded from the signatures on commit cd8a202, issue 23); resolved recipes hold them, so they never move
SIGNATURE_DEFAULTS = {
    "barlow": {"lambd": 0.0051, "proj_hidden": 8192, "proj_layers": 3, "proj_out": 8192},
    "barlow-hprob": {"beta": 0.001, "components": 10, "lambd": 0.0051, "latent_dim": None, "prior": "normal",
                     "proj_hidden": 8192, "proj_layers": 3, "proj_out": 8192, "samples": 12},
    "barlow-zprob": {"beta": 0.01, "components": 10, "lambd": 0.0051, "prior": "normal", "proj_hidden": 8192,
                     "proj_layers": 3, "proj_out": 8192, "samples": 12},
    "byol": {"momentum": 0.996, "momentum_cosine": True, "pred_hidden": 4096, "proj_hidden": 4096, "proj_out": 256},
    "dino": {"bottleneck": 256, "center_momentum": 0.9, "freeze_last_layer_epochs": 1, "global_views": 2,
             "head_hidden": 2048, "momentum": 0.996, "norm_last_layer": True, "out_dim": 65536, "student_temp": 0.1,
             "teacher_temp": 0.04, "warmup_teacher_temp": 0.04, "warmup_teacher_temp_epochs": 30},
    "mocov2": {"momentum": 0.999, "proj_hidden": 2048, "proj_out": 128, "queue_size": 65536, "symmetric": False,
               "temperature": 0.2},
    "mocov3": {"momentum": 0.99, "momentum_cosine": True, "pred_hidden": 4096, "pred_last_bn": False,
               "proj_hidden": 4096, "proj_layers": 2, "proj_out": 256, "temperature": 1.0},
    "simclr": {"proj_hidden": 2048, "proj_layers": 2, "proj_out": 128, "temperature": 0.1},
    "simsiam": {"pred_hidden": 512, "proj_hidden": 2048, "proj_out": 2048},
    "simvae": {"channels": 3, "components": 10, "encoder": "conv", "hidden": 256, "image_size": 32,
               "likelihood": "gaussian", "log_var_x": -4.6, "p_y": "gaussian", "pixel_mean": None, "pixel_std": None,
               "sigma2": 0.15, "width": 32, "z_dim": 64},
    "swav": {"assign_views": 2, "epsilon": 0.05, "freeze_prototypes_steps": 313, "n_prototypes": 3000,
             "proj_hidden": 2048, "proj_out": 128, "queue_length": 3840, "queue_start_epoch": 15, "sinkhorn_iters": 3,
             "temperature": 0.1},
    "vicreg": {"cov_coeff": 1.0, "proj_hidden": 8192, "proj_layers": 3, "proj_out": 8192, "sim_coeff": 25.0,
               "std_coeff": 25.0},
    "vicreg-hprob": {"beta": 0.0001, "components": 10, "cov_coeff": 1.0, "latent_dim": None, "prior": "normal",
                     "proj_hidden": 8192, "proj_layers": 3, "proj_out": 8192, "samples": 12, "sim_coeff": 25.0,
                     "std_coeff": 25.0},
    "vicreg-zprob": {"beta": 0.001, "components": 10, "cov_coeff": 1.0, "prior": "normal", "proj_hidden": 8192,
                     "proj_layers": 3, "proj_out": 8192, "samples": 12, "sim_coeff": 25.0, "std_coeff": 25.0},
}  # fmt: skip


def test_every_built_in_method_has_a_model_with_help_and_its_published_defaults():
    assert sorted(SIGNATURE_DEFAULTS) == sorted(n for n, c in METHODS.items() if c.__module__.startswith("genaug."))
    for name, defaults in SIGNATURE_DEFAULTS.items():
        model = args_model(METHODS[name])
        assert model is not None and issubclass(model, MethodArgs), name
        assert {k: f.description for k, f in model.model_fields.items() if not f.description} == {}, name
        got = model().model_dump()
        assert got == defaults, name
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in defaults.items()}, name  # 30 not 30.0
        assert method_arguments({"method": name}) == defaults, name


def test_bounds_hold_where_the_meaning_says_so():
    for name in ("simclr", "mocov2", "mocov3", "swav"):
        with pytest.raises(GenaugError, match=r"^recipe key method_args.temperature must be above 0, got 0$"):
            method_arguments({"method": name, "method_args": {"temperature": 0}})
    for name in ("byol", "mocov3", "mocov2", "dino"):
        with pytest.raises(GenaugError, match=r"^recipe key method_args.momentum must lie in \[0, 1\], got 1.5$"):
            method_arguments({"method": name, "method_args": {"momentum": 1.5}})
    for key in ("proj_hidden", "proj_out"):
        with pytest.raises(GenaugError, match=rf"^recipe key method_args.{key} must be at least 1, got 0$"):
            method_arguments({"method": "byol", "method_args": {key: 0}})
    bad = {"dino": "student_temp", "swav": "epsilon", "barlow-zprob": "samples", "vicreg-hprob": "latent_dim"}
    for name, key in bad.items():
        with pytest.raises(GenaugError, match=rf"^recipe key method_args.{key} must be (above|at least)"):
            method_arguments({"method": name, "method_args": {key: 0}})
    with pytest.raises(GenaugError, match=r"^recipe key method_args.prior must be one of 'normal'"):
        method_arguments({"method": "barlow-hprob", "method_args": {"prior": "laplace"}})


def test_the_constructor_checks_its_keywords_and_reads_typed_values():
    with pytest.raises(GenaugError, match=r"^unknown recipe key method_args.temprature for method 'simclr' "
                                          r"\(did you mean method_args.temperature\?\)$"):  # fmt: skip
        METHODS["simclr"](nn.Identity(), 8, temprature=0.5)
    with pytest.raises(GenaugError, match=r"^recipe key method_args.proj_hidden must be an integer, got 1.5$"):
        METHODS["simclr"](nn.Identity(), 8, proj_hidden=1.5)
    m = METHODS["barlow-zprob"](nn.Identity(), 8, proj_hidden=16, proj_out=4, lambd="5e-3", beta=1)
    assert m.args.lambd == 0.005 and m.lambd == 0.005 and m.prob_loss.beta == 1.0
    assert m.projector[0].out_features == 16 and m.z_head is not None


def test_a_prob_method_is_its_base_model_plus_its_kind():
    for name, base in (("barlow-zprob", "barlow"), ("vicreg-hprob", "vicreg")):
        prob, plain = args_model(METHODS[name]), args_model(METHODS[base])
        assert issubclass(prob, plain)
        assert {k: prob.model_fields[k].description for k in plain.model_fields} == {
            k: f.description for k, f in plain.model_fields.items()
        }


def test_a_plug_in_with_a_plain_signature_keeps_the_signature_path():
    from genaug.ssl.methods import SSLMethod

    class Plain(SSLMethod):
        def __init__(self, backbone: nn.Module, feat_dim: int, width: int = 3, scale: float = 1.0) -> None:
            super().__init__(backbone, feat_dim)
            self.head = nn.Linear(feat_dim, width)

    class Wider(METHODS["simclr"]):
        def __init__(self, backbone: nn.Module, feat_dim: int, extra: int = 1, **kw: object) -> None:
            super().__init__(backbone, feat_dim, **kw)

    assert args_model(Plain) is None and args_model(Wider) is None
    assert args_model(type("Same", (METHODS["simclr"],), {})) is METHODS["simclr"].Args
    with pytest.raises(GenaugError, match="proj_hidden must be an integer"):
        Wider(nn.Identity(), 8, proj_hidden="x")


#: sha256[:12] of the sorted (state_dict key, shape) pairs of each method built with SMALL_ARGS, recorded on commit
#: cd8a202 before the typed models: checkpoints of earlier runs load only while these stay the same
STATE_DICT_LAYOUT = {
    "barlow": "8dbc215189c8", "barlow-hprob": "b35026cff251", "barlow-zprob": "f2f099ea0af5", "byol": "8dc4ea1165d8",
    "dino": "62e608b79244", "mocov2": "4f6c0c973d6f", "mocov3": "9f0a443bb590", "simclr": "397ae4f19219",
    "simsiam": "660af5614957", "simvae": "09454c040a3e", "swav": "59b3e5f427af", "vicreg": "8dbc215189c8",
    "vicreg-hprob": "b35026cff251", "vicreg-zprob": "f2f099ea0af5",
}  # fmt: skip


def small_args(name: str) -> dict:
    """Small method_args of `name` (every width a few units) for a fast build."""
    if name == "simvae":
        return {"z_dim": 4, "image_size": 16, "width": 4, "hidden": 8}
    if name == "dino":
        return {"out_dim": 8, "head_hidden": 8, "bottleneck": 4}
    extra = {"byol": {"pred_hidden": 8}, "simsiam": {"pred_hidden": 8}, "mocov3": {"pred_hidden": 8},
             "mocov2": {"queue_size": 8}, "swav": {"n_prototypes": 5, "queue_length": 8},
             "barlow-hprob": {"latent_dim": 6}, "vicreg-hprob": {"latent_dim": 6}}  # fmt: skip
    return {"proj_hidden": 8, "proj_out": 4, **extra.get(name, {})}


@pytest.mark.parametrize("name", sorted(STATE_DICT_LAYOUT))
def test_build_method_keeps_the_state_dict_layout(name):
    r = {"method": name, "backbone": {"name": "tiny", "width": 4}, "method_args": small_args(name)}
    sd = build_method(r).state_dict()
    layout = sorted((k, list(v.shape)) for k, v in sd.items())
    assert hashlib.sha256(json.dumps(layout).encode()).hexdigest()[:12] == STATE_DICT_LAYOUT[name], layout


CLI_ERRORS = [
    ("method_args.temprature=0.5", "unknown recipe key method_args.temprature for method 'simclr' (did you mean "
                                   "method_args.temperature?)"),
    ("method_args.proj_hidden=wide", "recipe key method_args.proj_hidden must be an integer, got 'wide'"),
    ("method_args.temperature=0", "recipe key method_args.temperature must be above 0, got 0"),
]  # fmt: skip


@pytest.mark.parametrize(("setting", "message"), CLI_ERRORS, ids=["unknown-key", "wrong-type", "out-of-bounds"])
def test_a_bad_method_argument_on_the_command_line_is_one_line_and_status_2(setting, message, tmp_path, capsys):
    rc = main(["train", "--method", "simclr", "--shards", str(tmp_path), "--set", setting])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err == f"genaug: error: {message}\n"
