"""timm backbones (`--backbone timm:NAME`) train, evaluate and export; timm and torchvision load the export
themselves and give genaug's features. `--backbone-weights` starts a backbone from a local checkpoint."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torchvision
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from genaug.cli import main
from genaug.evaluate.encoders import load_encoder
from genaug.ssl.backbones import backbone_from_recipe
from genaug.testing.shards import write_synthetic_split

SIZE = 16
HEADS = ["--set", "method_args.proj_hidden=32", "--set", "method_args.proj_out=16"]
RUNS = {  # backbone flags of each run: a timm CNN, a timm ViT (patch 8 at 16 px: 4 tokens), a genaug torchvision net
    "timm-resnet18": ["--backbone", "timm:resnet18"],
    "timm-vit": ["--backbone", "timm:vit_tiny_patch16_224", "--set", "backbone.timm_args.patch_size=8"],
    "resnet18": ["--backbone", "resnet18"],  # 16 px: the CIFAR stem (3x3/1 conv, no max-pool)
}


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("timmset") / "set"
    write_synthetic_split(root, "train", num_shards=1, per_shard=16, size=24, num_classes=2, seed=0)
    write_synthetic_split(root, "val", num_shards=1, per_shard=8, size=24, num_classes=2, seed=1)
    return root


@pytest.fixture(scope="module")
def runs(shard_set, tmp_path_factory):
    """Each backbone trained 2 steps through the CLI."""
    out = {}
    for name, flags in RUNS.items():
        run = tmp_path_factory.mktemp("runs") / name
        args = ["train", "--method", "simclr", "--shards", str(shard_set), "--out", str(run), "--steps", "2"]
        args += ["--batch-size", "8", "--image-size", str(SIZE), "--workers", "0", "--quiet", *HEADS, *flags]
        assert main(args) == 0
        out[name] = run
    return out


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _genaug_features(run) -> torch.Tensor:
    with torch.no_grad():
        return load_encoder(run).module(_x())


def _features(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(_x())


@pytest.mark.parametrize("name", ["timm-resnet18", "timm-vit"])
def test_timm_backbone_trains_evaluates_and_exports_to_timm(runs, shard_set, name, capsys):
    run = runs[name]
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["backbone"]["name"] == RUNS[name][1]  # the recipe records the net, so eval/resume rebuild it
    assert main(["eval", "knn", str(run), "--shards", str(shard_set), "--k", "3", "--quiet"]) == 0
    assert main(["export", str(run), "--format", "timm"]) == 0
    info = json.loads(next((run / "export").glob("timm-*.json")).read_text())
    assert str(run / "export") in capsys.readouterr().out
    arch, kwargs, file = info["architecture"], info["kwargs"], info["file"]
    # timm's own loader, the way the issue asks for it: pretrained=True with the file as pretrained_cfg_overlay
    model = timm.create_model(
        arch, pretrained=True, pretrained_cfg_overlay=dict(file=file, num_classes=0), **kwargs
    )  # fmt: skip
    ref = _genaug_features(run)
    assert torch.allclose(_features(model), ref, atol=1e-5, rtol=1e-4)
    # the other spelling: num_classes=0 as an argument (timm drops the classifier it then finds missing)
    model2 = timm.create_model(arch, pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=file), **kwargs)
    assert torch.allclose(_features(model2), ref, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(_features(timm.create_model(arch, num_classes=0, **kwargs)), ref, atol=1e-3)


@pytest.mark.parametrize("name", ["timm-resnet18", "resnet18"])
def test_resnet18_exports_to_torchvision(runs, name):
    run = runs[name]
    assert main(["export", str(run), "--format", "torchvision", "--out", str(run / "tv.safetensors")]) == 0
    state = load_file(str(run / "tv.safetensors"))
    model = torchvision.models.resnet18()
    if name == "resnet18":  # genaug's 16 px resnet18 has the CIFAR stem: the sidecar code says so
        assert json.loads((run / "tv.json").read_text())["cifar_stem"] is True
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    # torchvision's 1000-class fc stays at its initialisation with strict=False: only fc is missing
    missing = model.load_state_dict(state, strict=False)
    assert sorted(missing.missing_keys) == ["fc.bias", "fc.weight"] and not missing.unexpected_keys
    model.fc = nn.Identity()  # genaug's features: the pooled output without classifier, loaded strictly
    model.load_state_dict(state, strict=True)
    assert torch.allclose(_features(model), _genaug_features(run), atol=1e-5, rtol=1e-4)


def test_timm_vit_exports_to_torchvision(runs):
    """The trained timm ViT, renamed to torchvision's VisionTransformer keys, gives genaug's features there."""
    run = runs["timm-vit"]
    assert main(["export", str(run), "--format", "torchvision", "--out", str(run / "tv.safetensors")]) == 0
    info = json.loads((run / "tv.json").read_text())
    kw = info["kwargs"]
    assert info["architecture"] == "VisionTransformer" and (kw["image_size"], kw["patch_size"]) == (SIZE, 8)
    state = load_file(str(run / "tv.safetensors"))
    model = torchvision.models.vision_transformer.VisionTransformer(**kw)
    # torchvision's classifier head stays at its initialisation with strict=False: only heads is missing
    missing = model.load_state_dict(state, strict=False)
    assert sorted(missing.missing_keys) == ["heads.head.bias", "heads.head.weight"] and not missing.unexpected_keys
    model.heads = nn.Identity()  # the class token after the final norm, as timm's token pooling gives
    model.load_state_dict(state, strict=True)
    ref = _genaug_features(run)
    assert torch.allclose(_features(model), ref, atol=1e-5, rtol=1e-4)
    fresh = torchvision.models.vision_transformer.VisionTransformer(**kw)
    fresh.heads = nn.Identity()
    assert not torch.allclose(_features(fresh), ref, atol=1e-3)  # the features come from the file


def test_export_refuses_what_the_library_lacks(runs, capsys):
    from genaug.core.errors import GenaugError
    from genaug.export import target_for

    assert main(["export", str(runs["resnet18"]), "--format", "timm"]) == 2  # CIFAR stem: no timm ResNet has it
    assert "CIFAR stem" in capsys.readouterr().err
    # timm models torchvision has no architecture for: a ConvNeXt, a ViT with registers, a ViT pooled by averaging
    others = [
        ("convnext_atto", {}),
        ("vit_small_patch14_reg4_dinov2", {}),
        ("vit_tiny_patch16_224", {"global_pool": "avg"}),
    ]
    for name, args in others:
        recipe = {"backbone": {"name": f"timm:{name}", "timm_args": args}, "data": {"image_size": 32}}
        module, _ = backbone_from_recipe(recipe)
        with pytest.raises(GenaugError, match="--format timm") as e:
            target_for(module, recipe, "torchvision")
        assert "\n" not in str(e.value)


def test_backbone_weights_start_from_a_timm_checkpoint(runs, shard_set, tmp_path, capsys):
    """A timm checkpoint as users have them (classifier included, under state_dict, DDP prefix) is the start."""
    src = timm.create_model("resnet18", num_classes=1000)
    ckpt = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, ckpt)
    recipe = yaml.safe_load((runs["timm-resnet18"] / "recipe.yaml").read_text())
    recipe["backbone"]["weights"] = str(ckpt)
    module, _ = backbone_from_recipe(recipe, init_weights=True)
    for k, v in module.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k
    # the CLI records the file and its identity; a file of another architecture is one line naming the flag
    run = tmp_path / "from-weights"
    args = ["train", "--method", "simclr", "--shards", str(shard_set), "--out", str(run), "--steps", "1"]
    args += ["--batch-size", "8", "--image-size", str(SIZE), "--workers", "0", "--quiet", *HEADS]
    assert main([*args, *RUNS["timm-resnet18"], "--backbone-weights", str(ckpt)]) == 0
    bb = yaml.safe_load((run / "recipe.yaml").read_text())["backbone"]
    assert bb["weights"] == str(ckpt.resolve()) and len(bb["weights_sha256"]) == 64
    other = tmp_path / "vit.safetensors"
    save_file(timm.create_model("vit_tiny_patch16_224", num_classes=0).state_dict(), str(other))
    rc = main([*args[:6], str(tmp_path / "bad"), *args[7:], *RUNS["timm-resnet18"], "--backbone-weights", str(other)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--backbone-weights" in err, err


def test_unknown_timm_model_is_one_line(shard_set, capsys):
    assert main(["train", "--shards", str(shard_set), "--backbone", "timm:resnet19"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genaug: error: unknown timm model 'resnet19'") and "did you mean" in err


@pytest.mark.parametrize(("name", "size", "fmt"), [("resnet18", 72, "timm"), ("resnet18", 72, "torchvision")])
def test_genaug_standard_stem_resnet_loads_in_both_libraries(tmp_path, name, size, fmt):
    """genaug's resnet18 with the standard stem uses torchvision's key names, which timm's ResNets share."""
    from genaug.export import target_for

    module, _ = backbone_from_recipe({"backbone": {"name": name}, "data": {"image_size": size}})
    module.eval()
    file = tmp_path / "b.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(file))
    target = target_for(module, {"backbone": {"name": name}}, fmt)
    if fmt == "timm":
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(file), num_classes=0))
    else:
        model = torchvision.models.resnet18()
        model.fc = nn.Identity()
        model.load_state_dict(load_file(str(file)), strict=True)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), module(x), atol=1e-5, rtol=1e-4)
    assert target.arch == name and not target.cifar_stem
