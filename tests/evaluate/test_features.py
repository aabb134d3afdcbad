"""Feature extraction over real shard files, its cache, and loading encoders from run folders and checkpoints."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from genaug.core.errors import GenaugError
from genaug.evaluate import features as F
from genaug.evaluate.encoders import load_encoder
from genaug.shards.reader import iter_shard

from .conftest import TinyEncoder, UncertainEncoder

PRE = F.Preprocess(image_size=16)


def _truth(folder):
    out = {}
    for tar in sorted(folder.glob("*.tar")):
        for s in iter_shard(tar):
            out[s["__key__"]] = (s["cls"], s["jpg"])
    return out


def test_extract_matches_direct_forward(shard_set):
    enc = TinyEncoder()
    folder = shard_set / "train"
    fs = F.extract_features(enc, folder, PRE, batch_size=5, device="cpu")
    truth = _truth(folder)
    assert fs.keys == sorted(truth) and len(fs.keys) == 24
    assert fs.labels.tolist() == [truth[k][0] for k in fs.keys]
    assert fs.features.shape == (24, 6) and fs.features.dtype == np.float32
    x = torch.stack([PRE(truth[k][1]) for k in fs.keys[:3]])
    with torch.no_grad():
        direct = enc(x).mean((2, 3)).numpy()
    np.testing.assert_allclose(fs.features[:3], direct, rtol=1e-5, atol=1e-6)
    assert PRE.resolved()["resize"] == 18 and x.shape[-1] == 16
    # batch size and worker processes do not change the rows or their order
    fs2 = F.extract_features(enc, folder, PRE, batch_size=24, device="cpu", num_workers=2)
    assert fs2.keys == fs.keys
    np.testing.assert_allclose(fs2.features, fs.features, rtol=1e-5, atol=1e-6)


def test_uncertainty_and_npz_round_trip(shard_set, tmp_path):
    fs = F.extract_features(UncertainEncoder(), shard_set / "val", PRE, batch_size=4, device="cpu")
    assert fs.extras["uncertainty"].shape == (12,)
    fs.save(tmp_path / "f.npz")
    back = F.FeatureSet.load(tmp_path / "f.npz")
    assert back.keys == fs.keys and np.array_equal(back.features, fs.features)
    assert np.array_equal(back.extras["uncertainty"], fs.extras["uncertainty"])
    assert back.meta["preprocess"]["image_size"] == 16
    with pytest.raises(GenaugError, match="not a features"):
        (tmp_path / "bad.npz").write_bytes(b"nope")
        F.FeatureSet.load(tmp_path / "bad.npz")


def test_cache_is_keyed_by_encoder_and_reused(shard_set, tmp_path, monkeypatch):
    enc = TinyEncoder()
    a = F.cached_features(enc, "sha256:aaa", shard_set / "val", tmp_path, PRE, device="cpu")
    files = list(tmp_path.glob("val-*.npz"))
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("should have used the cache")

    monkeypatch.setattr(F, "extract_features", boom)
    b = F.cached_features(enc, "sha256:aaa", shard_set / "val", tmp_path, PRE, device="cpu")
    assert np.array_equal(a.features, b.features)
    monkeypatch.undo()
    F.cached_features(TinyEncoder(seed=1), "sha256:bbb", shard_set / "val", tmp_path, PRE, device="cpu")
    F.cached_features(enc, "sha256:aaa", shard_set / "val", tmp_path, F.Preprocess(image_size=12), device="cpu")
    assert len(list(tmp_path.glob("val-*.npz"))) == 3


def _builder(recipe):
    assert recipe["backbone"]["name"] == "tiny"
    return TinyEncoder(width=recipe["backbone"]["width"], seed=99)


def test_load_encoder_run_folder_and_checkpoint(shard_set, tmp_path):
    ref = TinyEncoder(width=6, seed=3)
    run = tmp_path / "run"
    run.mkdir()
    recipe = {"method": "barlow", "p": 0.5, "backbone": {"name": "tiny", "width": 6}}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    save_file(ref.state_dict(), str(run / "backbone.safetensors"))
    enc = load_encoder(run, builder=_builder)
    assert enc.home == run and enc.encoder_id.startswith("sha256:") and enc.recipe["p"] == 0.5
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(enc.module(x), ref(x))
    # a foreign checkpoint (not written by genaug's trainer) with the backbone inside a state dict, recipe embedded
    full = {f"backbone.{k}": v for k, v in ref.state_dict().items()} | {"projector.w": torch.zeros(2)}
    torch.save({"model": full, "recipe": recipe, "step": 7}, run / "foreign.pt")
    enc2 = load_encoder(run / "foreign.pt", builder=_builder)
    assert enc2.home == run and torch.equal(enc2.module(x), ref(x))
    # weights that do not fit the recipe's backbone
    with pytest.raises(GenaugError, match="does not fit"):
        load_encoder(run, builder=lambda r: TinyEncoder(width=4))
    with pytest.raises(GenaugError, match="does not exist"):
        load_encoder(tmp_path / "nope")
    (tmp_path / "norecipe").mkdir()
    save_file(ref.state_dict(), str(tmp_path / "norecipe" / "backbone.safetensors"))
    with pytest.raises(GenaugError, match="no recipe"):
        load_encoder(tmp_path / "norecipe", builder=_builder)


def test_load_hf_clip_image_encoder(shard_set, tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=8,
        projection_dim=8,
    )
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(cfg).save_pretrained(tmp_path / "pipe" / "image_encoder")
    index = {"_class_name": "StableDiffusionImageVariationPipeline"}
    (tmp_path / "pipe" / "model_index.json").write_text(json.dumps(index))
    enc = load_encoder(tmp_path / "pipe")
    assert enc.encoder_id.startswith("hf:")
    fs = F.extract_features(enc.module, shard_set / "val", batch_size=6, device="cpu")
    assert fs.features.shape == (12, 8)
    assert fs.meta["preprocess"]["mean"][0] == pytest.approx(0.48145466)


def test_a_read_only_model_folder_is_never_written(shard_set, tmp_path, monkeypatch):
    """eval caches the features of a Hugging Face encoder in genaug's cache, not inside the (read-only) model."""
    import os
    import stat

    from transformers import CLIPVisionConfig, CLIPVisionModel

    from genaug.evaluate.options import KnnOptions
    from genaug.evaluate.run import eval_knn

    monkeypatch.setenv("GENAUG_CACHE", str(tmp_path / "cache"))
    cfg = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=16, patch_size=8)  # fmt: skip
    model = tmp_path / "store" / "clip"
    CLIPVisionModel(cfg).save_pretrained(model)
    for p in [model, *model.iterdir()]:
        os.chmod(p, stat.S_IREAD | (stat.S_IEXEC if p.is_dir() else 0))
    try:
        doc = eval_knn(KnnOptions(model=model, shards=shard_set, ks=[5], quiet=True))
    finally:
        for p in [model, *model.iterdir()]:
            os.chmod(p, stat.S_IRWXU)
    assert sorted(q.name for q in model.iterdir()) == ["config.json", "model.safetensors"]
    assert Path(doc["path"]).is_relative_to(tmp_path / "cache")
