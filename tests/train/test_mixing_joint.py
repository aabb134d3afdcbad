"""Mixing draws one replace/keep decision per view (`mix_views: each`): the joint pattern of a sample's two views,
not only the marginal rate p. One decision shared by both views has the same marginal rate and no mixed pairs."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream_fixtures import PLAIN_VIEWS, classify_view, write_gen_column  # noqa: E402

from genaug.data.mixing import MixPolicy  # noqa: E402
from genaug.data.stream import build_train_loader  # noqa: E402
from genaug.testing.shards import write_synthetic_split  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("joint")
    write_synthetic_split(root, "train", num_shards=4, per_shard=16, size=24, seed=2)
    write_gen_column(root, "train", "sd", k=2, column=0)
    return root


def _pairs(root: Path, p: float, epochs: int) -> list[tuple[bool, bool]]:
    out = []
    for epoch in range(epochs):
        loader = build_train_loader(root, split="train", gen_columns=["sd"], p=p, views_recipe=PLAIN_VIEWS,
                                    batch_size=8, num_workers=0, shuffle_buffer=8, epoch=epoch, seed=11)  # fmt: skip
        for b in loader:
            for i in range(len(b["key"])):
                seen = [classify_view(v[i].numpy()) != "source" for v in b["views"]]
                assert seen == b["replaced"][i].tolist()  # the flags say what the pixels show
                out.append(tuple(seen))
    return out


def test_each_view_of_a_sample_is_replaced_independently(data):
    p = 0.5
    pairs = _pairs(data, p, epochs=2)
    n = len(pairs)
    both = sum(a and b for a, b in pairs)
    one = sum(a != b for a, b in pairs)
    none = sum(not a and not b for a, b in pairs)
    # independent per view: P(both) = p^2, P(exactly one) = 2p(1-p), P(none) = (1-p)^2 (4-sigma bands)
    for count, prob in ((both, p * p), (one, 2 * p * (1 - p)), (none, (1 - p) ** 2)):
        assert abs(count / n - prob) < 4 * math.sqrt(prob * (1 - prob) / n), (both, one, none, n)


def test_decide_uses_its_own_uniform_for_each_view():
    policy = MixPolicy(p=0.5, mix_views="each")
    # view 0 draws 0.1 (< p: replaced), view 1 draws 0.9 (kept): a shared decision would give equal views
    assert policy.decide([0.1, 0.9, 0.0, 0.0], 2, n_variants=2) == [1, 0]
    assert policy.decide([0.9, 0.1, 0.0, 0.0], 2, n_variants=2) == [0, 1]
    assert policy.decide([0.1, 0.2, 0.0, 0.99], 2, n_variants=2) == [1, 2]  # each view draws its own variant
