"""SSL losses as small pure functions over embeddings; the distributed ones gather across ranks with gradients.

Conventions: inputs are [B, D] local-batch tensors; a loss that needs the global batch gathers it with
`genaug.ssl.distributed.gather` (autograd-correct), so that under DDP (which averages gradients over ranks) the
gradient equals the single-process gradient of the loss on the global batch. Losses over local anchors return the
local mean; their mean over ranks is the global loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genaug.ssl.distributed import all_reduce_mean_, all_reduce_sum, gather, gather_nograd, rank, world_size


def _up(x: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors to float32 (float32 and float64 kept as they are)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _gather_keys(k: torch.Tensor) -> torch.Tensor:
    return gather(k) if k.requires_grad else gather_nograd(k)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020, eq. 1): each of the 2N views must find its pair among the 2N-1 others.

    Cosine similarities divided by `temperature` (reference 0.1 for batch 4096 with LARS; 0.5 in the paper's
    small-batch ablations). Anchors are this rank's 2B views, keys the 2N views of all ranks.
    """
    b = z1.shape[0]
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    k1, k2 = gather(z1), gather(z2)
    n = k1.shape[0]
    anchors = torch.cat([z1, z2])
    keys = torch.cat([k1, k2])
    logits = anchors @ keys.T / temperature
    idx = torch.arange(b, device=z1.device) + rank() * b
    self_cols = torch.cat([idx, idx + n])
    pos_cols = torch.cat([idx + n, idx])
    rows = torch.arange(2 * b, device=z1.device)
    logits = logits.masked_fill(
        torch.zeros_like(logits, dtype=torch.bool).index_put_((rows, self_cols), torch.tensor(True, device=z1.device)),
        float("-inf"),
    )
    return F.cross_entropy(logits, pos_cols)


def info_nce(q: torch.Tensor, k: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """InfoNCE of MoCo v3 (Chen, Xie, He 2021, Alg. 1): q_i must pick k_i among the keys of the global batch.

    Returns ``2 * temperature * CE`` as in the reference code (so the gradient scale does not depend on the
    temperature); reference temperature 1.0 for ResNet-50, 0.2 for ViT. Keys that require grad are gathered with
    gradients (SimCLR-style symmetric use), momentum keys without.
    """
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    keys = _gather_keys(k)
    logits = q @ keys.T / temperature
    labels = torch.arange(q.shape[0], device=q.device) + rank() * q.shape[0]
    return F.cross_entropy(logits, labels) * (2 * temperature)


def moco_v2_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo v2 InfoNCE (He et al. 2020 eq. 1; Chen et al. 2020): the positive key against a queue of negatives.

    `k` are momentum-encoder keys (no gradient), `queue` [K, D] holds normalized past keys (reference K=65536,
    temperature 0.2).
    """
    q, k = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ queue.detach().T
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


@torch.no_grad()
def enqueue(queue: torch.Tensor, ptr: torch.Tensor, keys: torch.Tensor) -> None:
    """Write the keys of the global batch into the ring buffer `queue` at `ptr` (both updated in place).

    Keys are written one after the other from `ptr` on; a global batch larger than the queue keeps its newest
    `len(queue)` keys, where they would have landed (the reference asserts queue % batch == 0 instead).
    """
    keys = gather_nograd(keys)
    size, n = queue.shape[0], keys.shape[0]
    p = int(ptr.item())
    skip = max(0, n - size)  # older keys overwritten within this very batch
    idx = (torch.arange(skip, n, device=queue.device) + p) % size
    queue[idx] = keys[skip:].to(queue.dtype)
    ptr.fill_((p + n) % size)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al. 2020, eq. 2): 2 - 2 cos(p, sg(z)), averaged over the batch."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=-1)).mean()


def simsiam_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's negative cosine D(p, sg(z)) (Chen & He 2021, eq. 1), averaged over the batch."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def _global_standardize(z: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, int]:
    n = z.shape[0] * world_size()
    mean = all_reduce_sum(z.sum(dim=0)) / n
    zc = z - mean
    var = all_reduce_sum((zc * zc).sum(dim=0)) / n
    return zc / torch.sqrt(var + eps), n


def fp32_of(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32 when it is half precision (float64 stays float64, for exact reference checks)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3) -> torch.Tensor:
    """Barlow Twins (Zbontar et al. 2021, eq. 1): sum_i (1 - C_ii)^2 + lambda sum_{i!=j} C_ij^2.

    C is the cross-correlation of the two views' embeddings standardized over the global batch (BatchNorm without
    affine, biased variance, eps 1e-5, as in the reference code); reference lambda 5e-3 (0.0051 in the code).
    """
    a, n = _global_standardize(z1)
    b, _ = _global_standardize(z2)
    with torch.autocast(a.device.type, enabled=False):  # a D x D sum of squares: bf16 loses it (issue 17)
        c = all_reduce_sum(fp32_of(a).T @ fp32_of(b)) / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def _off_diagonal_sq_sum(m: torch.Tensor) -> torch.Tensor:
    return m.pow(2).sum() - torch.diagonal(m).pow(2).sum()


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-4) -> dict[str, torch.Tensor]:
    """The three VICReg terms (Bardes et al. 2022, eqs. 1-5): invariance (local MSE), variance hinge and covariance.

    Variance: mean_j relu(1 - sqrt(Var(z_j) + eps)) averaged over both branches; covariance: squared off-diagonal
    entries of the (unbiased) covariance summed and divided by D, summed over branches; both over the global batch.
    """
    inv = F.mse_loss(z1, z2)
    x, y = gather(z1), gather(z2)
    n, d = x.shape
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    std_x, std_y = torch.sqrt(x.var(dim=0) + eps), torch.sqrt(y.var(dim=0) + eps)
    var = F.relu(1 - std_x).mean() / 2 + F.relu(1 - std_y).mean() / 2
    cov_x, cov_y = x.T @ x / (n - 1), y.T @ y / (n - 1)
    cov = _off_diagonal_sq_sum(cov_x) / d + _off_diagonal_sq_sum(cov_y) / d
    return {"inv": inv, "var": var, "cov": cov}


def vicreg_loss(
    z1: torch.Tensor, z2: torch.Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0
) -> torch.Tensor:
    """VICReg (Bardes et al. 2022, eq. 6): lambda*inv + mu*var + nu*cov with the reference 25 / 25 / 1."""
    t = vicreg_terms(z1, z2)
    return sim_coeff * t["inv"] + std_coeff * t["var"] + cov_coeff * t["cov"]


def dino_loss(
    student: list[torch.Tensor],
    teacher: list[torch.Tensor],
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """DINO (Caron et al. 2021, eq. 1 and Alg. 1): H(P_t(x_i), P_s(x_j)) over pairs of different crops.

    The teacher's outputs of the global crops are centered and sharpened (temperature 0.04 -> 0.07 warm-up in the
    recipes, see `dino_teacher_temp`), the student's of every crop use temperature 0.1; the mean is taken over the
    pairs (i, j), i != j, of teacher and student crops.
    """
    targets = [F.softmax((t.detach() - center) / teacher_temp, dim=-1) for t in teacher]
    logps = [F.log_softmax(s / student_temp, dim=-1) for s in student]
    total, pairs = 0.0, 0
    for i, q in enumerate(targets):
        for j, lp in enumerate(logps):
            if i == j:
                continue
            total = total + (-(q * lp).sum(dim=-1)).mean()
            pairs += 1
    return total / pairs


@torch.no_grad()
def update_center(center: torch.Tensor, teacher: list[torch.Tensor], momentum: float = 0.9) -> None:
    """DINO's center EMA (reference momentum 0.9) with the mean teacher output over the global batch, in place."""
    t = torch.cat([_up(x.detach()) for x in teacher])
    batch_sum = t.sum(dim=0, keepdim=True)
    count = torch.tensor([float(t.shape[0])], device=t.device)
    all_reduce_mean_(batch_sum)
    all_reduce_mean_(count)
    center.mul_(momentum).add_(batch_sum / count, alpha=1 - momentum)


def dino_teacher_temp(epoch: float, warmup_epochs: float, start: float = 0.04, end: float = 0.04) -> float:
    """DINO's teacher temperature: linear warm-up from `start` to `end` over `warmup_epochs`, then `end`."""
    if warmup_epochs <= 0 or epoch >= warmup_epochs:
        return end
    return start + (end - start) * epoch / warmup_epochs


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, eps: float = 0.05, iters: int = 3) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp (Caron et al. 2020, eq. 3 and Alg. 1) over the global batch: codes [B, K].

    Q = exp(scores / eps), then `iters` alternating normalisations so that the K prototypes share the global batch
    equally (each prototype's column of the codes sums to N/K) and each sample's code sums to 1
    (reference eps 0.05, 3 iterations).
    """
    scores = _up(scores.detach())
    m = scores.max().clone()
    if world_size() > 1:  # every rank must shift by the same max for the codes to equal the global computation
        torch.distributed.all_reduce(m, op=torch.distributed.ReduceOp.MAX)
    q = torch.exp((scores - m) / eps).T  # [K, B]; the shift cancels in the normalisation
    k, b = q.shape
    n = b * world_size()
    total = q.sum()
    if world_size() > 1:
        torch.distributed.all_reduce(total)
    q /= total
    for _ in range(iters):
        rows = q.sum(dim=1, keepdim=True)
        if world_size() > 1:
            torch.distributed.all_reduce(rows)
        q /= rows
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= n
    return (q * n).T


def swav_loss(scores: list[torch.Tensor], codes: list[torch.Tensor], temperature: float = 0.1) -> torch.Tensor:
    """SwAV's swapped prediction (Caron et al. 2020, eq. 1): each crop's scores predict the other crops' codes.

    `scores[v]` are [B, K] prototype scores of crop v, `codes[i]` the Sinkhorn codes of the assignment crops
    (the first len(codes) crops); reference temperature 0.1.
    """
    total, terms = 0.0, 0
    for i, q in enumerate(codes):
        for v, s in enumerate(scores):
            if v == i:
                continue
            total = total + (-(q * F.log_softmax(s / temperature, dim=1)).sum(dim=1)).mean()
            terms += 1
    return total / terms
