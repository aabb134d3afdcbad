"""Seams between stages, with the artefacts a user's run really writes (nothing mocked, no made-up layouts).

For every shipped method: train on synthetic shards (1 process, and for the methods whose state depends on the
world size also 2 processes under torchrun with gloo), then evaluate from the run folder, backbone.safetensors and
the last checkpoint: the features are equal across the three and across extraction batch sizes 1 and 64, and
`genaug eval linear/knn/ood` run from the run folder through the CLI, recording the run's own preprocessing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genaug.cli import main
from genaug.core.recipes import available
from genaug.evaluate.encoders import load_encoder
from genaug.evaluate.features import cached_features, split_folder
from genaug.ssl.artifacts import latest_checkpoint_file, load_method
from genaug.testing.runs import train_tiny
from genaug.testing.shards import write_synthetic_split

METHODS = available("trainers")
# methods whose state could depend on the number of processes (queues) or whose encode is not the backbone
TWO_PROCESS = ("swav", "mocov2", "barlow-hprob")


@pytest.fixture(scope="module")
def seam_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seams") / "set"
    write_synthetic_split(root, "train", num_shards=2, per_shard=16, size=24, num_classes=3, seed=0)
    write_synthetic_split(root, "val", num_shards=2, per_shard=8, size=24, num_classes=3, seed=1)
    return root


def train_run(method: str, shards: Path, out: Path, nproc: int = 1, steps: int = 4) -> Path:
    """Train `method` as a user would (in-process, or torchrun with `nproc` gloo processes); the run folder."""
    return train_tiny(method, shards, out, nproc=nproc, steps=steps)


def features(path: Path, shards: Path, batch_size: int) -> np.ndarray:
    """Features of the val split through the encoder loaded from `path` (no cache)."""
    enc = load_encoder(path)
    fs = cached_features(enc.module, enc.encoder_id, split_folder(shards, "val"), None, batch_size=batch_size)
    return fs.features


def check_artefacts(run: Path, shards: Path, method: str) -> None:
    """Run folder, backbone.safetensors and the last checkpoint give the same features, at batch sizes 1 and 64."""
    ckpt = latest_checkpoint_file(run)
    assert ckpt is not None and (run / "model.safetensors").is_file() and (run / "backbone.safetensors").is_file()
    from_run = features(run, shards, 64)
    assert np.allclose(from_run, features(run, shards, 1), atol=1e-5), "features depend on the batch size"
    assert np.array_equal(from_run, features(ckpt, shards, 64)), "checkpoint and model.safetensors disagree"
    loaded = load_method(run)
    backbone_only = features(run / "backbone.safetensors", shards, 64)
    encodes_backbone = method not in ("barlow-hprob", "vicreg-hprob", "simvae")
    if encodes_backbone:
        assert np.array_equal(from_run, backbone_only)
    else:  # these evaluate the method's own encoder head; backbone.safetensors is the backbone alone
        x = torch.zeros(2, 3, 16, 16)
        assert torch.equal(load_encoder(run / "backbone.safetensors").module(x), loaded.method.backbone(x))


@pytest.mark.parametrize("method", METHODS)
def test_train_then_evaluate_every_artefact(method, seam_set, tmp_path):
    run = train_run(method, seam_set, tmp_path / method)
    check_artefacts(run, seam_set, method)
    base = [str(run), "--shards", str(seam_set), "--quiet"]
    assert main(["eval", "linear", *base, "--fast"]) == 0
    assert main(["eval", "knn", *base, "--k", "5"]) == 0
    ood = ["eval", "ood", str(run), "--in", str(seam_set), "--out", str(seam_set), "--fast", "--knn-k", "5", "--quiet"]
    assert main(ood) == 0
    for name in ("linear-val", "knn-val", "ood-val-set"):
        doc = json.loads(next((run / "eval").glob(f"{name}*.json")).read_text())
        assert doc["preprocess"]["image_size"] == 16, "evaluation ignored the run's own view size"
        assert doc["run_info"]["method"] == method


def test_eval_uses_the_runs_normalisation_and_cli_ood(seam_set, tmp_path):
    """SimVAE trains on [0, 1] pixels: its evaluation must not normalise with ImageNet mean/std."""
    run = train_run("simvae", seam_set, tmp_path / "simvae")
    enc = load_encoder(run)
    assert list(enc.module.genaug_preprocess.mean) == [0.0, 0.0, 0.0]
    assert enc.module.genaug_preprocess.image_size == 16
    assert main(["eval", "knn", str(run), "--shards", str(seam_set), "--quiet"]) == 0
    assert (
        main(["eval", "ood", str(run), "--in", str(seam_set), "--out", str(seam_set), "--knn-k", "5", "--quiet"]) == 0
    )


@pytest.mark.parametrize("method", TWO_PROCESS)
def test_two_processes_then_one(method, seam_set, tmp_path):
    """A run trained on 2 processes (torchrun, gloo) loads and evaluates in 1 process, from every artefact."""
    run = train_run(method, seam_set, tmp_path / f"{method}-2p", nproc=2)
    assert load_method(latest_checkpoint_file(run)).recipe["resolved"]["world_size"] == 2
    check_artefacts(run, seam_set, method)


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in METHODS if m not in TWO_PROCESS])
def test_two_processes_then_one_all_methods(method, seam_set, tmp_path):
    """The same for the remaining methods (slow: one torchrun each)."""
    check_artefacts(train_run(method, seam_set, tmp_path / f"{method}-2p", nproc=2), seam_set, method)
