"""Elastic resume of the stream, in one process (each rank's loader built with its rank): N x W -> N' x W'.

The torchrun version (gloo, real ranks) is tests/train/test_stream_ddp.py::test_elastic_resume_under_torchrun."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from stream_fixtures import PLAIN_VIEWS, write_gen_column  # noqa: E402

from genaug.core.errors import GenaugError  # noqa: E402
from genaug.data.stream import build_train_loader  # noqa: E402
from genaug.testing.shards import write_synthetic_split  # noqa: E402

SHARDS, PER_SHARD, BATCH = 12, 4, 2  # 48 samples


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("elastic")
    write_synthetic_split(root, "train", num_shards=SHARDS, per_shard=PER_SHARD, size=16, seed=4, record=True)
    write_gen_column(root, "train", "sd", k=1)
    return root


def loaders(root, world: int, workers: int, **kw) -> list:
    args = dict(gen_columns=["sd"], p=0.5, views_recipe=PLAIN_VIEWS, batch_size=BATCH, seed=5, shuffle_buffer=3)
    args.update(kw)
    return [
        build_train_loader(root, "train", num_workers=workers, rank=r, world_size=world, **args) for r in range(world)
    ]


def take(loader, n: int | None = None) -> list[dict]:
    """The next n batches of `loader` (all of its current epoch when n is None)."""
    it = iter(loader)
    out = [b for _, b in zip(range(n), it, strict=False)] if n is not None else list(it)
    del it
    return out


def keys(batches) -> list[str]:
    return [k for b in batches for k in b["key"]]


def checkpoint(root, world: int, workers: int, steps: int) -> tuple[list[str], list[dict]]:
    """`steps` steps on every rank of world x workers: (keys seen, every rank's state)."""
    seen, states = [], []
    for ld in loaders(root, world, workers):
        seen += keys(take(ld, steps))
        states.append(ld.state_dict())
    return seen, states


def resume(root, world: int, workers: int, states: list[dict]) -> tuple[list[str], list, list[int]]:
    """Every rank of world x workers restored from `states`, run to the end of the epoch."""
    seen, lds, steps = [], loaders(root, world, workers), []
    for ld in lds:
        ld.load_state_dict(states)
        ld.set_epoch(states[0]["epoch"])  # the trainer's call keeps the restored position
        steps.append(len(ld))
        seen += keys(take(ld))
    return seen, lds, steps


@pytest.fixture(scope="module")
def two_by_two(data) -> tuple[list[str], list[dict]]:
    """2 ranks x 2 workers, checkpointed 3 steps into epoch 0: (keys seen, both ranks' states)."""
    return checkpoint(data, 2, 2, steps=3)


def same(a: list[dict], b: list[dict]) -> bool:
    """Equal batches: keys, replaced flags and every view bitwise."""
    if keys(a) != keys(b):
        return False
    for x, y in zip(a, b, strict=True):
        views = zip(x["views"], y["views"], strict=True)
        if not torch.equal(x["replaced"], y["replaced"]) or not all(torch.equal(u, v) for u, v in views):
            return False
    return True


@pytest.mark.parametrize("world, workers", [(1, 3), (3, 1)])
def test_the_interrupted_epoch_is_finished_once_on_another_world_size(data, two_by_two, world, workers):
    before, states = two_by_two
    after, lds, steps = resume(data, world, workers, states)
    assert len(set(steps)) == 1  # every rank the same number of steps: DDP never hangs
    assert len(before) == 2 * 3 * BATCH and len(after) == SHARDS * PER_SHARD - len(before)
    assert len(set(before + after)) == len(before + after) == SHARDS * PER_SHARD  # each once, none missing
    # the next epoch is the one a fresh run on world x workers draws
    fresh = loaders(data, world, workers)
    for ld, new in zip(lds, fresh, strict=True):
        assert ld.epoch == 1 and ld.step == 0
        new.set_epoch(1)
        ld.set_epoch(1)
        assert same(take(ld), take(new))


def test_resume_inside_the_rest_is_exact_and_can_change_size_again(data, two_by_two):
    before, states = two_by_two
    # 2 x 2 -> 1 x 3: checkpoint 3 steps into the rest, then resume on 1 x 3 again (bitwise) and on 3 x 1
    (ld,) = loaders(data, 1, 3)
    ld.load_state_dict(states)
    head = take(ld, 3)
    mid = [ld.state_dict()]
    tail_ref = take(ld)
    (again,) = loaders(data, 1, 3)
    again.load_state_dict(mid)
    assert same(take(again), tail_ref)
    rest, _, _ = resume(data, 3, 1, mid)  # 48 - 12 - 6 = 30 left: 5 steps of 3 ranks x 2
    seen = before + keys(head) + rest
    assert len(seen) == len(set(seen)) == SHARDS * PER_SHARD


def test_another_batch_size_is_dealt_out_only_when_the_caller_keeps_the_global_batch(data, two_by_two):
    """rebatch=True (what `genaug train` passes: it keeps the global batch itself): same 2 x 2, batch 2 -> 3."""
    before, states = two_by_two
    after = []
    for ld in loaders(data, 2, 2, batch_size=3):
        with pytest.raises(GenaugError, match="batch_size was 2"):
            ld.load_state_dict(states)
        ld.load_state_dict(states, rebatch=True)
        assert len(ld) == (SHARDS * PER_SHARD - len(before)) // (2 * 3)
        after += keys(take(ld))
    seen = before + after
    assert len(seen) == len(set(seen)) == SHARDS * PER_SHARD


def test_the_rest_read_by_ranges_gives_the_batches_of_whole_reads(data, two_by_two):
    """Range reads (member indexes, variants drawn up front per pass) in the rest of an epoch on 1 x 3 workers."""
    _, states = two_by_two
    (ranged,), (whole,) = loaders(data, 1, 3, range_reads="on"), loaders(data, 1, 3, range_reads="off")
    ranged.load_state_dict(states)
    whole.load_state_dict(states)
    assert same(take(ranged), take(whole))
    assert ranged.last_io["index_fallback"] == 0 and ranged.last_io["bytes_used"] == whole.last_io["bytes_used"] > 0


def test_elastic_resume_errors_are_one_line(data, two_by_two):
    _, states = two_by_two
    (other_seed,) = loaders(data, 1, 1, seed=6)
    with pytest.raises(GenaugError, match="seed was 5 in the checkpoint"):
        other_seed.load_state_dict(states)
    (other_batch,) = loaders(data, 1, 1, batch_size=3)
    with pytest.raises(GenaugError, match="batch_size was 2"):
        other_batch.load_state_dict(states)
    (one,) = loaders(data, 1, 1)
    with pytest.raises(GenaugError, match="needs the data state of every one of its 2 ranks"):
        one.load_state_dict(states[0])


def test_train_resume_check_lets_the_process_count_change_but_not_the_recipe(tmp_path):
    """The run folder check of `genaug train` (the trainer-level elastic runs: tests/train/test_train_elastic.py)."""
    import yaml

    from genaug.train.runner import _check_resume

    recipe = {"run": {"p": 0.5}, "data": {"batch_size": 8, "num_workers": 1}, "resolved": None}
    (tmp_path / "checkpoint-00000004.pt").write_bytes(b"")
    old = {**recipe, "data": {"batch_size": 8, "num_workers": 4}, "resolved": {"world_size": 2, "precision": "no"}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(old))
    ckpt, saved = _check_resume(recipe, tmp_path, None, "no")  # 2 processes x 4 workers -> any: the plan is kept
    assert ckpt.name == "checkpoint-00000004.pt" and saved["resolved"]["world_size"] == 2
    with pytest.raises(GenaugError, match="trained in precision no and this run resolves to bf16"):
        _check_resume(recipe, tmp_path, None, "bf16")
    with pytest.raises(GenaugError, match="started with --batch-size 8 and this run has 4: a resume keeps the run's"):
        _check_resume({**recipe, "data": {"batch_size": 4}}, tmp_path, None, "no")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({**old, "run": {"p": 0.1}}))
    with pytest.raises(GenaugError, match="another recipe or data"):
        _check_resume(recipe, tmp_path, None, "no")
