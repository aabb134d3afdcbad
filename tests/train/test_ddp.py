"""Distributed losses on 2 gloo processes equal the single-process loss and gradient on the global batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from genaug.ssl import losses as L

WORLD, B, D = 2, 4, 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "z1": torch.randn(WORLD * B, D, generator=g),
        "z2": torch.randn(WORLD * B, D, generator=g),
        "teacher": torch.randn(WORLD * B, D, generator=g),
    }


# name -> f(z1, z2) returning a scalar loss; evaluated on local slices under DDP and on the global batch alone
CASES = {
    "nt_xent": lambda a, b: L.nt_xent(a, b, 0.5),
    "info_nce": lambda a, b: L.info_nce(a, b, 0.2),  # keys with grad: gathered differentiably
    "barlow": lambda a, b: L.barlow_twins_loss(a, b, 5e-3),
    "vicreg": lambda a, b: L.vicreg_loss(a, b),
    "swav": lambda a, b: L.swav_loss([a, b], [L.sinkhorn(b, 0.5, 3), L.sinkhorn(a, 0.5, 3)]),
}
# losses over local anchors return the local mean: the global loss is the mean over ranks
LOCAL_MEAN = {"nt_xent", "info_nce", "vicreg", "swav"}


def _worker(rank: int, port: int, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    data = _inputs()
    sl = slice(rank * B, (rank + 1) * B)
    res = {}
    for name, fn in CASES.items():
        a = data["z1"][sl].clone().requires_grad_(True)
        b = data["z2"][sl].clone().requires_grad_(True)
        loss = fn(a, b)
        loss.backward()
        # DDP averages parameter gradients over ranks: the effective input gradient is grad / WORLD
        res[name] = (loss.detach(), a.grad / WORLD, b.grad / WORLD)
    res["sinkhorn"] = L.sinkhorn(data["z1"][sl], 0.3, 3)
    center = torch.zeros(1, D)
    L.update_center(center, [data["teacher"][sl]], 0.9)
    res["center"] = center
    gathered = [None] * WORLD
    dist.all_gather_object(gathered, res)
    if rank == 0:
        torch.save(gathered, out_path)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp") / "res.pt")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_distributed_loss_and_gradient_equal_global_batch(ddp_results, name):
    data = _inputs()
    a, b = data["z1"].clone().requires_grad_(True), data["z2"].clone().requires_grad_(True)
    loss = CASES[name](a, b)
    loss.backward()
    per_rank = torch.stack([r[name][0] for r in ddp_results])
    dist_loss = per_rank.mean() if name in LOCAL_MEAN else per_rank
    if name not in LOCAL_MEAN:  # every rank computes the same global loss
        assert torch.allclose(per_rank, loss.detach().expand_as(per_rank), atol=1e-5)
    assert torch.allclose(dist_loss, loss.detach(), atol=1e-5)
    ga = torch.cat([r[name][1] for r in ddp_results])
    gb = torch.cat([r[name][2] for r in ddp_results])
    assert torch.allclose(ga, a.grad, atol=1e-5), (ga - a.grad).abs().max()
    assert torch.allclose(gb, b.grad, atol=1e-5), (gb - b.grad).abs().max()


def test_distributed_sinkhorn_and_dino_center_equal_global_batch(ddp_results):
    data = _inputs()
    codes = torch.cat([r["sinkhorn"] for r in ddp_results])
    assert torch.allclose(codes, L.sinkhorn(data["z1"], 0.3, 3), atol=1e-6)
    center = torch.zeros(1, D)
    L.update_center(center, [data["teacher"]], 0.9)
    for r in ddp_results:
        assert torch.allclose(r["center"], center, atol=1e-6)
