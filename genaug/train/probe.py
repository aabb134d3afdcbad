"""Online linear probe: a linear classifier trained on detached backbone features alongside SSL training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OnlineProbe(nn.Module):
    """BatchNorm (no affine) + linear layer on detached features; its loss never reaches the backbone."""

    def __init__(self, feat_dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(feat_dim, affine=False)
        self.fc = nn.Linear(feat_dim, num_classes)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Cross-entropy of the probe on (detached) features, and its logs: probe_loss, probe_acc (batch top-1).

        Labels < 0 (unlabeled samples) are ignored; a batch without any label gives a zero loss that still touches
        every parameter (so DDP sees them used)."""
        logits = self.fc(self.norm(features.detach().float()))
        valid = labels >= 0
        if not bool(valid.any()):
            zero = logits.sum() * 0.0
            return zero, {}
        loss = F.cross_entropy(logits[valid], labels[valid])
        acc = (logits[valid].argmax(dim=1) == labels[valid]).float().mean()
        return loss, {"probe_loss": loss.detach(), "probe_acc": acc}
