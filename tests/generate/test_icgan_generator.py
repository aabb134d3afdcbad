"""IC-GAN: official checkpoint folders, SwAV loading and preprocessing, seeded sampling, and `genaug generate`."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from genaug.core.errors import GenaugError
from genaug.core.recipes import apply_overrides, load_recipe
from genaug.generate.base import variant_seed
from genaug.generate.models.icgan.checkpoint import load_training_state, select_best
from genaug.generate.models.icgan.generator import ICGAN, truncated_noise
from genaug.generate.models.icgan.model import ICGANConfig, ICGANGenerator
from genaug.generate.models.icgan.swav import SwAVFeatures, preprocess
from genaug.testing.icgan import randomize_, training_state, write_random_checkpoint

EXP = "icgan_biggan_imagenet_res64"
TINY = {"dtype": "fp32", "model.G_ch": 4, "features.width_per_group": 8, "runtime.batch_size": 4, "k": 2}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """--weights DIR: the official layout (experiment folder + SwAV file), random weights, best1 has the lower FID."""
    root = tmp_path_factory.mktemp("icgan_weights")
    cfg = ICGANConfig.from_dict({**load_recipe("pipelines", "icgan-64")["model"], "G_ch": 4})
    write_random_checkpoint(root, cfg, EXP, seed=0, feature_width=8, best_fids=(20.0, 10.0))
    # the official trainer may store the FID as a numpy scalar: make best1's one so
    torch.save(training_state(cfg, np.float64(10.0), EXP), root / EXP / "state_dict_best1.pth")
    return root


@pytest.fixture(scope="module")
def icgan(ckpt: Path) -> ICGAN:
    return ICGAN(apply_overrides(load_recipe("pipelines", "icgan-64"), TINY), "cpu", str(ckpt))


def _image(seed: int, w: int = 48, h: int = 40) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_best_checkpoint_is_the_lower_fid(ckpt: Path, icgan: ICGAN) -> None:
    name, state = select_best(ckpt / EXP)
    assert name == "best1" and float(state["best_FID"]) == 10.0
    assert icgan.checkpoint.endswith("G_ema_best1.pth")
    sd = torch.load(ckpt / EXP / "G_ema_best1.pth", weights_only=True)
    assert all(torch.equal(icgan.G.state_dict()[k], v) for k, v in sd.items())


def test_ties_and_missing_state_pick_best0(tmp_path: Path) -> None:
    cfg = ICGANConfig(resolution=64, G_ch=2, G_attn="32")
    exp = write_random_checkpoint(tmp_path, cfg, "e", feature_width=8, best_fids=(7.0, 7.0))
    assert select_best(exp)[0] == "best0"
    (exp / "state_dict_best0.pth").unlink()
    assert select_best(exp)[0] == "best1"


def test_training_state_unpickling_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"best_FID": 3.5, "config": {"x": Evil()}}, tmp_path / "state_dict_best0.pth", pickle_module=pickle)
    state = load_training_state(tmp_path / "state_dict_best0.pth")
    assert state["best_FID"] == 3.5 and not marker.exists()
    assert "opaque" in repr(state["config"]["x"])


@pytest.mark.parametrize("zipfile", [True, False])
def test_training_state_of_official_shape_reads_in_both_torch_formats(tmp_path: Path, zipfile: bool) -> None:
    cfg = ICGANConfig(resolution=64, G_ch=2, G_attn="32")
    path = tmp_path / "state_dict_best0.pth"
    torch.save(training_state(cfg, np.float64(12.25), "e"), path, _use_new_zipfile_serialization=zipfile)
    state = load_training_state(path)
    assert state["best_FID"] == 12.25 and state["config"]["G_ch"] == 2 and state["config"]["G_attn"] == "32"
    assert "torch.nn.modules.activation.ReLU" in repr(state["config"]["G_activation"])


def test_checkpoint_of_another_architecture_is_refused(ckpt: Path) -> None:
    recipe = apply_overrides(load_recipe("pipelines", "icgan-64"), {**TINY, "model.G_ch": 8})
    with pytest.raises(GenaugError, match="G_ch=4"):
        ICGAN(recipe, "cpu", str(ckpt))


def test_missing_weights_are_a_user_error(tmp_path: Path) -> None:
    recipe = apply_overrides(load_recipe("pipelines", "icgan-64"), TINY)
    with pytest.raises(GenaugError, match="--weights"):
        ICGAN(recipe, "cpu", None)
    with pytest.raises(GenaugError, match="G_ema_best0.pth"):
        ICGAN(recipe, "cpu", str(tmp_path))


def test_swav_checkpoint_format(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trunk = SwAVFeatures(8).net.state_dict()
    sd = {f"module.{k}": v for k, v in trunk.items() if not k.startswith("fc.")}
    sd["module.projection_head.0.weight"] = torch.randn(4, 2048)
    sd["module.prototypes.weight"] = torch.randn(3, 4)
    torch.save(sd, tmp_path / "swav.pth.tar")
    f = SwAVFeatures(8)
    f.load_swav(tmp_path / "swav.pth.tar")
    assert torch.equal(f.net.layer4[2].conv3.weight, trunk["layer4.2.conv3.weight"])
    out = f(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 2048)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    del sd["module.layer1.0.conv1.weight"]
    torch.save(sd, tmp_path / "bad.pth.tar")
    with pytest.raises(GenaugError, match="layer1.0.conv1.weight"):
        f.load_swav(tmp_path / "bad.pth.tar")


def test_preprocess_crops_the_long_edge() -> None:
    """A 90x30 image: left third red, middle green, right blue -> the square crop is all green."""
    arr = np.zeros((30, 90, 3), dtype=np.uint8)
    arr[:, :30, 0] = 255
    arr[:, 30:60, 1] = 255
    arr[:, 60:, 2] = 255
    x = preprocess([Image.fromarray(arr)], resize=64)
    assert x.shape == (1, 3, 224, 224)
    expect = (torch.tensor([0.0, 1.0, 0.0]) - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x[0].mean(dim=(1, 2)), expect, atol=1e-4)


def test_truncated_noise_reproducible_and_bounded() -> None:
    a, b = truncated_noise(123, 20000, 0.7), truncated_noise(123, 20000, 0.7)
    assert torch.equal(a, b) and not torch.equal(a, truncated_noise(124, 20000, 0.7))
    assert a.abs().max() <= 1.4
    from scipy.stats import truncnorm

    assert a.std().item() == pytest.approx(truncnorm(-1.4, 1.4).std(), abs=0.01)
    assert a.mean().item() == pytest.approx(0.0, abs=0.02)


def test_generate_shape_range_and_seeds(icgan: ICGAN) -> None:
    imgs = [_image(1), _image(2, 30, 50)]
    out = icgan.generate(imgs, ["a", "b"], [[11, 12, 13], [21]])
    assert [len(v) for v in out] == [3, 1]
    arrs = [np.asarray(v.image) for vs in out for v in vs]
    assert all(a.shape == (64, 64, 3) and a.dtype == np.uint8 for a in arrs)
    assert all(a.std() > 1 for a in arrs)  # not constant
    assert [v.meta["seed"] for v in out[0]] == [11, 12, 13]
    # same (image, seed) -> same pixels, whatever else is in the batch; different seeds -> different images
    again = icgan.generate([imgs[1]], ["b"], [[21, 12]])
    assert np.abs(np.asarray(again[0][0].image).astype(int) - arrs[3]).max() <= 2
    assert not np.array_equal(arrs[0], arrs[1])
    # the same seed gives another image for another source (instance conditioning; weak with random SwAV weights)
    assert not np.array_equal(np.asarray(again[0][1].image), arrs[1])


def test_oversampling_keeps_the_candidate_closest_to_the_source(ckpt: Path, icgan: ICGAN) -> None:
    recipe = apply_overrides(load_recipe("pipelines", "icgan-64"), {**TINY, "sampling.oversample": 3})
    over = ICGAN(recipe, "cpu", str(ckpt))
    img = _image(5)
    (v,) = over.generate([img], ["a"], [[77]])[0]
    cond = over.encode([img])[0]
    from genaug.generate.models.icgan.generator import candidate_seed
    from genaug.generate.models.icgan.swav import generated_to_features_input

    cands = over.render(cond[None].repeat(3, 1), [candidate_seed(77, j) for j in range(3)], 3)
    dists = (over.F(generated_to_features_input(cands)) - cond).norm(dim=1)
    assert v.meta["candidate"] == int(dists.argmin())
    assert v.meta["feature_distance"] == pytest.approx(float(dists.min()), abs=1e-5)
    assert candidate_seed(77, 0) == 77
    plain = icgan.generate([img], ["a"], [[candidate_seed(77, v.meta["candidate"])]])[0][0]
    assert np.abs(np.asarray(plain.image).astype(int) - np.asarray(v.image).astype(int)).max() <= 2


def test_half_capacity_256_forward_shape() -> None:
    cfg = ICGANConfig.from_dict({**load_recipe("pipelines", "icgan-256-half")["model"], "G_ch": 4})
    gen = randomize_(ICGANGenerator(cfg), 0).freeze().to(torch.bfloat16)
    with torch.no_grad():
        out = gen(truncated_noise(1, 119, 0.7)[None].to(torch.bfloat16), torch.randn(1, 2048, dtype=torch.bfloat16))
    assert out.shape == (1, 3, 256, 256) and out.dtype == torch.bfloat16 and out.abs().max() <= 1


def test_cli_generate_icgan_end_to_end(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("genaug.generate.runner")
    from genaug.cli import main
    from genaug.shards.reader import iter_shard_raw
    from genaug.shards.writer import is_shard_done
    from genaug.testing.shards import write_synthetic_split

    shards = tmp_path / "set"
    write_synthetic_split(shards, "train", num_shards=2, per_shard=3, size=40)
    recipe = apply_overrides(load_recipe("pipelines", "icgan-64"), {**TINY, "output.size": 48})
    recipe["name"] = "icgan-tiny"
    (tmp_path / "icgan-tiny.yaml").write_text(yaml.safe_dump(recipe))
    argv = [
        "generate",
        "--model",
        str(tmp_path / "icgan-tiny.yaml"),
        "--shards",
        str(shards),
        "--weights",
        str(ckpt),
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert main(argv) == 0
    col = shards / "gen" / "icgan-tiny" / "train"
    manifest = json.loads((col / "manifest.json").read_text())
    assert manifest["recipe"]["generator"] == "icgan" and manifest["k"] == 2
    for i in range(2):
        assert is_shard_done(col, i, check_sha=True)
        src = [r["__key__"] for r in iter_shard_raw(shards / "train" / f"{i:06d}.tar")]
        gen = list(iter_shard_raw(col / f"{i:06d}.tar"))
        assert [r["__key__"] for r in gen] == src
        for r in gen:
            meta = json.loads(r["json"])
            assert meta["failed"] is None
            assert meta["seeds"] == [variant_seed(0, r["__key__"], k) for k in range(2)]
            assert Image.open(io.BytesIO(r["gen_1.jpg"])).size == (48, 48)
    before = (col / "000000.tar").read_bytes()
    assert main(argv) == 0  # a rerun finds everything done and leaves it alone
    assert (col / "000000.tar").read_bytes() == before
    # the shipped recipe (`--model icgan`, res 256) without --weights: one-line user error
    capsys.readouterr()
    assert main(["generate", "--model", "icgan", "--shards", str(shards), "--device", "cpu", "--no-progress"]) == 2
    assert "--weights DIR" in capsys.readouterr().err


def test_icgan_columns_are_scored_in_swav_space(ckpt: Path, tmp_path: Path) -> None:
    """IC-GAN scores its variants with its own SwAV features while generating; `genaug score --encoder swav` on the
    same weights recomputes them."""
    from genaug.cli import main
    from genaug.shards.manifest import read_manifest
    from genaug.shards.scores import iter_scores
    from genaug.testing.shards import write_synthetic_split

    shards = tmp_path / "set"
    write_synthetic_split(shards, "train", num_shards=1, per_shard=3, size=40)
    recipe = apply_overrides(load_recipe("pipelines", "icgan-64"), {**TINY, "output.size": 48})
    recipe["name"] = "icgan-tiny"
    (tmp_path / "icgan-tiny.yaml").write_text(yaml.safe_dump(recipe))
    gen = ["generate", "--model", str(tmp_path / "icgan-tiny.yaml"), "--shards", str(shards), "--weights", str(ckpt)]
    assert main([*gen, "--device", "cpu", "--no-progress"]) == 0
    col = shards / "gen" / "icgan-tiny" / "train"
    assert read_manifest(col)["fidelity"]["space"] == "swav"
    inline = dict(iter_scores(col))
    score = ["score", "--shards", str(shards), "--gen", "icgan-tiny", "--encoder", "swav", "--weights", str(ckpt)]
    assert main([*score, "--device", "cpu", "--no-progress"]) == 0
    later = dict(iter_scores(shards / "scores" / "icgan-tiny" / "train"))
    assert later.keys() == inline.keys() and len(inline) == 3
    for key, doc in inline.items():
        assert doc["scores"] == pytest.approx(later[key]["scores"], abs=1e-4)
