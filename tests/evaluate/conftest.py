"""Shared fixtures: a tiny labeled synthetic split and a tiny encoder."""

import pytest
import torch
from torch import nn

from genaug.testing.shards import write_synthetic_split


class TinyEncoder(nn.Module):
    """Conv + ReLU; returns a spatial map (the feature code pools it)."""

    def __init__(self, width: int = 6, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, width, 3, stride=2)
        self.head = nn.Conv2d(width, width, 1)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)))


class UncertainEncoder(TinyEncoder):
    """A tiny encoder with a per-sample uncertainty (like the probabilistic methods)."""

    def uncertainty(self, x):
        return x.abs().mean((2, 3))  # (N, 3): mean over dims is taken by the feature code


@pytest.fixture(scope="session")
def shard_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalset") / "set"
    write_synthetic_split(root, "train", num_shards=2, per_shard=12, size=24, num_classes=3, seed=0)
    write_synthetic_split(root, "val", num_shards=1, per_shard=12, size=24, num_classes=3, seed=1)
    return root
