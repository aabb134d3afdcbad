"""Fidelity in the training stream: --gen-min-score filtering, score weighting, side score columns, exact resume."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from stream_fixtures import PLAIN_VIEWS, classify_view, gen_colour  # noqa: E402

from genaug.core.errors import GenaugError  # noqa: E402
from genaug.data.mixing import MixPolicy  # noqa: E402
from genaug.data.stream import build_train_loader  # noqa: E402
from genaug.shards.manifest import read_manifest, write_manifest  # noqa: E402
from genaug.shards.reader import iter_shard_raw  # noqa: E402
from genaug.shards.scores import summarize  # noqa: E402
from genaug.shards.verify import verify_set  # noqa: E402
from genaug.shards.writer import commit_shard  # noqa: E402
from genaug.testing.shards import write_synthetic_split  # noqa: E402

K, X = 3, 0.4
GOOD = [0.2, 0.5, 0.9]  # variant 0 is below X
BAD = [0.1, 0.3, 0.2]  # none left at X: the source is used


def scores_of(key: str) -> list[float]:
    """Every 4th sample has only bad variants."""
    return BAD if int(key[-6:]) % 4 == 0 else GOOD


def _jpeg(colour, size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_scored_column(root: Path, name: str, inline: bool) -> None:
    """Column `name`: variant k flat colour gen_colour(0, k); scores inline in its json, or in a side column."""
    src = root / "train"
    man = read_manifest(src)
    fid = {"space": "test", "encoder": "test"}
    dst, side = root / "gen" / name / "train", root / "scores" / name / "train"
    dst.mkdir(parents=True)
    base = {"source_split": "train", "shards": man["shards"], "k": K}
    write_manifest(dst, {**base, "kind": "generated", "recipe": {"name": name}, "recipe_hash": name,
                         "fidelity": fid if inline else None})  # fmt: skip
    if not inline:
        side.mkdir(parents=True)
        write_manifest(side, {**base, "kind": "scores", "column": name, "fidelity": fid})
    for sname in man["shards"]:
        gen, sc, docs = [], [], []
        for raw in iter_shard_raw(src / sname):
            key = raw["__key__"]
            doc = {"space": "test", "scores": scores_of(key), "diversity": 0.5, "blank": [], "near_copy": []}
            docs.append(doc)
            meta = {"failed": None, **({"fidelity": doc} if inline else {})}
            s = {"__key__": key, "json": json.dumps(meta)}
            s.update({f"gen_{j}.jpg": _jpeg(gen_colour(0, j), 24) for j in range(K)})
            gen.append(s)
            sc.append({"__key__": key, "json": json.dumps({"failed": None, "fidelity": doc})})
        commit_shard(dst, int(sname[:6]), gen)
        if not inline:
            commit_shard(side, int(sname[:6]), sc, ("json",), {"fidelity": summarize(docs, "test")})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fid")
    write_synthetic_split(root, "train", num_shards=4, per_shard=8, size=24, seed=1)
    write_scored_column(root, "inl", inline=True)
    write_scored_column(root, "side", inline=False)
    write_scored_column(root, "none", inline=True)
    man = read_manifest(root / "gen" / "none" / "train")
    write_manifest(root / "gen" / "none" / "train", {**man, "fidelity": None})  # a column without scores
    return root


def run(root, **kw):
    args = dict(split="train", views_recipe=PLAIN_VIEWS, batch_size=8, num_workers=0, shuffle_buffer=8)
    args.update(kw)
    loader = build_train_loader(root, **args)
    return loader, list(loader)


def drawn(batches) -> list[tuple[str, int | None]]:
    """(key, variant index drawn or None for the source) of every view."""
    palette = {gen_colour(0, j): j for j in range(K)}
    out = []
    for b in batches:
        for i, key in enumerate(b["key"]):
            for v in b["views"]:
                c = classify_view(v[i].numpy())
                out.append((key, None if c == "source" else palette[c]))
    return out


@pytest.mark.parametrize("column", ["inl", "side"])
def test_min_score_removes_exactly_the_variants_below(data, column):
    loader, batches = run(data, gen_columns=[column], p=1.0, gen_min_score=X)
    views = drawn(batches)
    folder = data / ("gen" if column == "inl" else "scores") / column / "train"
    stored = {}
    for name in read_manifest(folder)["shards"]:
        for raw in iter_shard_raw(folder / name):
            stored[raw["__key__"]] = json.loads(raw["json"])["fidelity"]["scores"]
    for key, k in views:
        if max(stored[key]) < X:
            assert k is None  # none left: the source image
        else:
            assert k is not None and stored[key][k] >= X
    used = {k for _, k in views if k is not None}
    assert used == {1, 2}  # both variants at or above X are drawn, variant 0 never
    n_bad = sum(1 for key in {key for key, _ in views} if max(stored[key]) < X)
    assert loader.gen_filtered == n_bad > 0 and loader.gen_seen == len({key for key, _ in views})
    assert loader.state_dict()["gen_filtered"] == n_bad


def test_score_weighting_draws_in_proportion():
    policy = MixPolicy(1.0, "each", None, "score")
    rng = np.random.default_rng(0)
    counts = np.zeros(K)
    n = 30000
    for _ in range(n):
        counts[policy.decide(rng.random(2), 1, K, GOOD)[0] - 1] += 1
    expect = np.array(GOOD) / sum(GOOD)
    assert np.abs(counts / n - expect).max() < 0.01  # 3 sigma is about 0.008
    filtered = MixPolicy(1.0, "each", X, "score")
    counts[:] = 0
    for _ in range(n):
        counts[filtered.decide(rng.random(2), 1, K, GOOD)[0] - 1] += 1
    assert counts[0] == 0 and abs(counts[2] / n - 0.9 / 1.4) < 0.01
    # uniform without scores is the old rule, draw for draw
    u = rng.random((500, 4))
    assert [MixPolicy(0.5).decide(r, 2, K) for r in u] == [MixPolicy(0.5).decide(r, 2, K, GOOD) for r in u]


def test_weighting_in_the_stream_follows_scores(data):
    _, batches = run(data, gen_columns=["inl"], p=1.0, gen_weighting="score", seed=5)
    views = [(key, k) for key, k in drawn(batches) if scores_of(key) == GOOD]
    freq = np.bincount([k for _, k in views], minlength=K) / len(views)
    assert freq[2] > freq[1] > freq[0] > 0


def test_exact_resume_with_filtering_and_weighting(data, tmp_path):
    kw = dict(gen_columns=["inl", "side"], p=0.7, batch_size=4, num_workers=2, seed=3, shuffle_buffer=5)
    kw.update(gen_min_score=X, gen_weighting="score")
    _, full = run(data, **kw)
    args = dict(split="train", views_recipe=PLAIN_VIEWS, **kw)
    first = build_train_loader(data, **args)
    it = iter(first)
    head = [next(it) for _ in range(3)]
    del it
    torch.save(first.state_dict(), tmp_path / "s.pt")
    second = build_train_loader(data, **args)
    second.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    second.set_epoch(0)
    tail = list(second)
    assert len(head) + len(tail) == len(full)
    for a, b in zip(head + tail, full, strict=True):
        assert a["key"] == b["key"] and torch.equal(a["replaced"], b["replaced"])
        for va, vb in zip(a["views"], b["views"], strict=True):
            assert torch.equal(va, vb)


def test_errors_and_verify(data):
    with pytest.raises(GenaugError, match=r"--gen-min-score needs fidelity scores.*genaug score"):
        build_train_loader(data, gen_columns=["none"], p=0.5, gen_min_score=0.3, views_recipe=PLAIN_VIEWS)
    with pytest.raises(GenaugError, match="--gen-weighting score needs"):
        build_train_loader(data, gen_columns=["none"], p=0.5, gen_weighting="score", views_recipe=PLAIN_VIEWS)
    with pytest.raises(GenaugError, match="--gen-min-score must lie in"):
        build_train_loader(data, gen_columns=["inl"], p=0.5, gen_min_score=2.0, views_recipe=PLAIN_VIEWS)
    with pytest.raises(GenaugError, match="--gen-weighting must be one of"):
        build_train_loader(data, gen_columns=["inl"], p=0.5, gen_weighting="best", views_recipe=PLAIN_VIEWS)
    _, problems = verify_set(str(data))
    assert problems == []  # the side score column is verified like any column


def test_recipe_and_flags_record_the_settings():
    from genaug.train.options import TrainOptions
    from genaug.train.runner import resolve_train_recipe

    def resolved(**flags):
        return resolve_train_recipe(TrainOptions(method="simclr"), flags)

    rec = resolved(**{"data.gen_min_score": 0.3, "data.gen_weighting": "score"})
    assert rec.data.gen_min_score == 0.3 and rec.data.gen_weighting == "score"
    default = resolved()
    assert default.data.gen_min_score is None and default.data.gen_weighting == "uniform"
    with pytest.raises(GenaugError, match="data.gen_weighting"):
        resolved(**{"data.gen_weighting": "best"})
    with pytest.raises(GenaugError, match="data.gen_min_score"):
        resolved(**{"data.gen_min_score": 1.5})


def test_training_records_and_logs_the_settings(data, tmp_path, capsys):
    """The CLI flags reach the stream, the resolved recipe and metrics.jsonl; a changed setting is not resumed."""
    import yaml

    from genaug.cli import main
    from genaug.testing.runs import tiny_overrides

    out = tmp_path / "run"
    argv = ["train", "--method", "simclr", "--shards", str(data), "--gen", "inl", "--p", "0.5", "--out", str(out)]
    argv += ["--steps", "2", "--backbone", "tiny", "--image-size", "16", "--batch-size", "8", "--workers", "0"]
    argv += ["--log-every", "1", "--quiet", "--gen-weighting", "score"]
    argv += [f"--set={k}={v}" for k, v in tiny_overrides("simclr").items()]
    assert main([*argv, "--gen-min-score", str(X)]) == 0
    rec = yaml.safe_load((out / "recipe.yaml").read_text())
    assert rec["data"]["gen_min_score"] == X and rec["data"]["gen_weighting"] == "score"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if "gen_filtered" in r][-1]
    assert last["gen_filtered"] > 0 and 0 < last["gen_filtered_rate"] < 1
    capsys.readouterr()
    assert main([*argv, "--gen-min-score", "0.1"]) == 2  # resuming with another threshold is refused
    assert "another recipe or data" in capsys.readouterr().err
