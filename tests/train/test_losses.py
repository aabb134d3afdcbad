"""SSL losses against hand-computed values and their known invariants."""

from __future__ import annotations

import math

import pytest
import torch

from genaug.ssl import losses as L


def test_nt_xent_identical_orthonormal_views_has_closed_form():
    b, t = 4, 0.5
    z = torch.eye(8)[:b]  # orthonormal embeddings: every negative has cosine 0
    # each anchor: positive logit 1/t, 2b-2 negatives with logit 0
    expected = math.log(1 + (2 * b - 2) * math.exp(-1 / t))
    assert L.nt_xent(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_matches_explicit_loop():
    g = torch.Generator().manual_seed(0)
    z1, z2, t = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g), 0.3
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    n, total = 3, 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        num = math.exp(float(z[i] @ z[pos]) / t)
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i)
        total += -math.log(num / den)
    assert L.nt_xent(z1, z2, t).item() == pytest.approx(total / (2 * n), rel=1e-5)


def test_info_nce_hand_value_and_temperature_scaling():
    q = torch.eye(3)
    t = 0.2
    expected = math.log(1 + 2 * math.exp(-1 / t)) * 2 * t
    assert L.info_nce(q, q.clone(), t).item() == pytest.approx(expected, rel=1e-6)


def test_moco_v2_hand_value():
    q, k = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]])  # k is normalised inside
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    # logits / T=0.5: positive 2, negatives 0 and -2
    expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    assert L.moco_v2_loss(q, k, queue, 0.5).item() == pytest.approx(expected, rel=1e-6)


def test_enqueue_is_a_ring_buffer():
    queue, ptr = torch.zeros(5, 1), torch.zeros((), dtype=torch.long)
    L.enqueue(queue, ptr, torch.tensor([[1.0], [2.0], [3.0]]))
    L.enqueue(queue, ptr, torch.tensor([[4.0], [5.0], [6.0]]))
    assert queue.flatten().tolist() == [6.0, 2.0, 3.0, 4.0, 5.0] and int(ptr) == 1


def test_byol_and_simsiam_cosine_losses():
    z = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    assert L.byol_loss(z, 5 * z).item() == pytest.approx(0.0, abs=1e-6)
    assert L.byol_loss(z, -z).item() == pytest.approx(4.0, abs=1e-6)
    assert L.simsiam_loss(z, z).item() == pytest.approx(-1.0, abs=1e-6)
    p = torch.tensor([[1.0, 0.0]], requires_grad=True)
    tgt = torch.tensor([[0.0, 1.0]], requires_grad=True)
    L.simsiam_loss(p, tgt).backward()
    assert tgt.grad is None and p.grad is not None  # stop-gradient on the target


BARLOW_Z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # zero mean, unit var, uncorrelated


def test_barlow_perfectly_correlated_inputs_give_zero():
    assert L.barlow_twins_loss(BARLOW_Z, BARLOW_Z.clone()).item() == pytest.approx(0.0, abs=1e-8)
    # scaling and shifting a view leaves the standardized cross-correlation unchanged
    assert L.barlow_twins_loss(BARLOW_Z, 3 * BARLOW_Z + 7).item() == pytest.approx(0.0, abs=1e-8)


def test_barlow_hand_value_with_swapped_features():
    lam = 5e-3
    swapped = BARLOW_Z[:, [1, 0]]  # C = [[0, 1], [1, 0]] (up to eps 1e-5 in the variance)
    expected = 2 * 1.0 + lam * 2 * (1 / (1 + 1e-5)) ** 2
    assert L.barlow_twins_loss(BARLOW_Z, swapped, lam).item() == pytest.approx(expected, rel=1e-5)


def test_vicreg_variance_hinge():
    wide = torch.tensor([[2.0, -2.0], [-2.0, 2.0], [2.0, 2.0], [-2.0, -2.0]])  # std > 1 in every dim
    assert L.vicreg_terms(wide, wide)["var"].item() == pytest.approx(0.0, abs=1e-7)
    collapsed = torch.zeros(4, 3)
    assert L.vicreg_terms(collapsed, collapsed)["var"].item() == pytest.approx(1 - math.sqrt(1e-4), rel=1e-6)
    half = torch.tensor([[0.25], [-0.25]])  # unbiased var 0.125 -> std sqrt(0.125 + 1e-4)
    t = L.vicreg_terms(half, half)
    assert t["var"].item() == pytest.approx(1 - math.sqrt(0.125 + 1e-4), rel=1e-6)


def test_vicreg_invariance_covariance_and_weights_hand_values():
    z1 = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # cov = [[2, 2], [2, 2]] -> off-diag sq sum 8, / D=2 -> 4
    z2 = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])  # cov off-diagonal -2 -> also 4
    t = L.vicreg_terms(z1, z2)
    assert t["inv"].item() == pytest.approx(2.0)  # mean of (0, 4, 0, 4)
    assert t["cov"].item() == pytest.approx(8.0)
    std = math.sqrt(2 + 1e-4)  # every dim has unbiased var 2 -> hinge 0
    assert t["var"].item() == pytest.approx(max(0.0, 1 - std))
    assert L.vicreg_loss(z1, z2).item() == pytest.approx(25 * 2.0 + 25 * 0 + 1 * 8.0)


def test_dino_loss_hand_values_and_centering():
    k = 4
    student = [torch.zeros(2, k), torch.zeros(2, k)]
    teacher = [torch.randn(2, k), torch.randn(2, k)]
    # uniform student: cross-entropy log K whatever the teacher
    assert L.dino_loss(student, teacher, torch.zeros(1, k)).item() == pytest.approx(math.log(k), rel=1e-6)
    s = [torch.tensor([[2.0, 0.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0, 0.0]])]
    t = [torch.tensor([[0.0, 1.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]])]
    # with a very low teacher temperature the targets are one-hot: t0 -> class 1 scored by s1, t1 -> class 0 by s0
    logp = torch.log_softmax(torch.tensor([2.0, 0, 0, 0]) / 0.1, 0)[0].item()
    assert L.dino_loss(s, t, torch.zeros(1, k), 0.1, 1e-3).item() == pytest.approx(-logp, rel=1e-5)
    # a constant shift of the teacher's logits (what centering removes) changes nothing
    shifted = [x + 5.0 for x in teacher]
    s2 = [torch.randn(2, k), torch.randn(2, k)]
    assert L.dino_loss(s2, shifted, torch.zeros(1, k)).item() == pytest.approx(
        L.dino_loss(s2, teacher, torch.zeros(1, k)).item(), rel=1e-5
    )


def test_dino_center_update_and_teacher_temperature_schedule():
    center = torch.zeros(1, 2)
    L.update_center(center, [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]])], momentum=0.9)
    assert center[0].tolist() == pytest.approx([0.2, 0.3])
    assert L.dino_teacher_temp(0, 30, 0.04, 0.07) == pytest.approx(0.04)
    assert L.dino_teacher_temp(15, 30, 0.04, 0.07) == pytest.approx(0.055)
    assert L.dino_teacher_temp(40, 30, 0.04, 0.07) == pytest.approx(0.07)


def test_sinkhorn_output_is_doubly_stochastic():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(12, 4, generator=g)
    q = L.sinkhorn(scores, eps=0.5, iters=200)
    assert q.sum(dim=1).tolist() == pytest.approx([1.0] * 12, abs=1e-5)  # each sample's code is a distribution
    assert q.sum(dim=0).tolist() == pytest.approx([3.0] * 4, abs=1e-4)  # prototypes share the batch equally
    q3 = L.sinkhorn(scores, eps=0.05, iters=3)  # reference setting: rows exact, columns close to equipartition
    assert q3.sum(dim=1).tolist() == pytest.approx([1.0] * 12, abs=1e-5)
    assert (q3 >= 0).all()


def test_swav_loss_hand_value():
    k = 5
    codes = [torch.eye(k)[:2], torch.eye(k)[2:4]]
    scores = [torch.zeros(2, k), torch.zeros(2, k)]
    assert L.swav_loss(scores, codes).item() == pytest.approx(math.log(k), rel=1e-6)
    peaked = [torch.eye(k)[2:4] * 10, torch.eye(k)[:2] * 10]  # each crop predicts the other's code
    expected = -torch.log_softmax(torch.tensor([10.0, 0, 0, 0, 0]) / 0.1, 0)[0].item()
    assert L.swav_loss(peaked, codes, 0.1).item() == pytest.approx(expected, rel=1e-5)
