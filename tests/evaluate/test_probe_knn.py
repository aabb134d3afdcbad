"""Linear probe and kNN: near-perfect on separable features, chance on random labels."""

import numpy as np
import pytest
import torch

from genaug.core.errors import GenaugError
from genaug.evaluate.knn import knn_classify
from genaug.evaluate.linear import ProbeConfig, linear_probe, topk_accuracy
from genaug.ssl.lars import LARS


def _separable(n, c=4, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (c, d)) * 4
    y = rng.integers(0, c, n)
    return (centers[y] + rng.normal(0, 0.5, (n, d))).astype(np.float32), y


def _random(n, c=4, d=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, d)).astype(np.float32), rng.integers(0, c, n)


@pytest.mark.parametrize(
    "cfg",
    [
        ProbeConfig(epochs=20, batch_size=64),
        ProbeConfig(solver="lars", epochs=20, batch_size=64, lr=1.0),
        ProbeConfig(epochs=20, batch_size=64, batchnorm=True),
        ProbeConfig(solver="ridge"),
        ProbeConfig(solver="ridge", batchnorm=True),
    ],
    ids=["sgd", "lars", "sgd-bn", "ridge", "ridge-bn"],
)
def test_probe_separable_and_random(cfg):
    xtr, ytr = _separable(400)
    rng = np.random.default_rng(1)
    centers = np.random.default_rng(0).normal(0, 1, (4, 16)) * 4
    yva = rng.integers(0, 4, 200)
    xva = (centers[yva] + rng.normal(0, 0.5, (200, 16))).astype(np.float32)
    res, probe = linear_probe(xtr, ytr, xva, yva, cfg)
    assert res["top1"] >= 0.98 and res["top5"] == 1.0
    assert res["settings"]["solver"] == cfg.solver
    # random labels: chance on held-out data
    rtr, rytr = _random(400, seed=2)
    rva, ryva = _random(400, seed=3)
    res, _ = linear_probe(rtr, rytr, rva, ryva, cfg)
    assert 0.13 < res["top1"] < 0.37


def test_default_lr_scales_with_batch():
    assert ProbeConfig(batch_size=256).effective_lr() == pytest.approx(0.1)
    assert ProbeConfig(batch_size=1024).effective_lr() == pytest.approx(0.4)
    assert ProbeConfig(lr=0.5).resolved()["lr"] == 0.5


def test_lars_trust_ratio_step():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # norm 5
    w.grad = torch.tensor([[0.0, 2.0]])  # norm 2
    LARS([w], lr=1.0, momentum=0.0, eta=0.001).step()
    # update = lr * eta * |w|/|g| * g = 0.001 * 2.5 * [0, 2]
    assert torch.allclose(w.data, torch.tensor([[3.0, 4.0 - 0.005]]))


def test_topk_hand():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05]])
    acc = topk_accuracy(logits, [1, 2], ks=(1, 2, 5))
    assert acc == {"top1": 0.5, "top2": 0.5, "top5": 1.0}


def test_unlabeled_is_user_error():
    x, y = _separable(20)
    with pytest.raises(GenaugError, match="unlabeled"):
        linear_probe(x, np.full(20, -1), x, y, ProbeConfig(solver="ridge"))


def test_knn_separable_random_and_settings():
    xtr, ytr = _separable(300)
    rng = np.random.default_rng(1)
    centers = np.random.default_rng(0).normal(0, 1, (4, 16)) * 4
    yva = rng.integers(0, 4, 100)
    xva = (centers[yva] + rng.normal(0, 0.5, (100, 16))).astype(np.float32)
    res = knn_classify(xtr, ytr, xva, yva, chunk=37)
    assert res["results"]["k20"]["top1"] >= 0.98 and res["results"]["k200"]["top1"] >= 0.98
    assert res["settings"]["temperature"] == 0.07 and res["settings"]["ks_used"] == [20, 200]
    rtr, rytr = _random(300, seed=2)
    rva, ryva = _random(300, seed=3)
    res = knn_classify(rtr, rytr, rva, ryva)
    assert 0.13 < res["results"]["k20"]["top1"] < 0.37


def test_knn_hand_weighted_vote_and_cap():
    # query [1,0]; bank: two class-0 points at 90 and 60 degrees, one class-1 point at 0 degrees
    bank = np.array([[0.0, 1.0], [0.5, 0.866], [1.0, 0.0]], np.float32)
    y = np.array([0, 0, 1])
    q = np.array([[1.0, 0.0]], np.float32)
    # k=3 capped; weights exp(0/0.07)*1 + exp(0.5/.07) for class 0 vs exp(1/.07) for class 1 -> class 1
    res = knn_classify(bank, y, q, [1], ks=(5,))
    assert res["settings"]["ks_used"] == [3] and res["results"]["k3"]["top1"] == 1.0
    # with a huge temperature the vote becomes a count: 2 of class 0 beat 1 of class 1
    res = knn_classify(bank, y, q, [1], ks=(3,), temperature=1e6)
    assert res["results"]["k3"]["top1"] == 0.0
