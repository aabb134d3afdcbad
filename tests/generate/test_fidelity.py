"""Fidelity scores on the tiny pipeline: written by generate, recomputed by `genaug score`, flags, sheets."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from genaug.cli import main as cli_main
from genaug.core.errors import GenaugError
from genaug.generate.dispatch import generate
from genaug.generate.recipe import resolve_recipe
from genaug.score.run import score
from genaug.shards.manifest import read_manifest, write_manifest
from genaug.shards.reader import iter_shard_raw
from genaug.shards.scores import iter_scores
from genaug.shards.verify import verify_set
from genaug.shards.writer import commit_shard, read_stats
from genaug.testing.shards import write_synthetic_split

K = 3


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    """A source split of 2 x 3 images and the tiny column `tiny` (K=3) with the scores generate writes."""
    root = tmp_path_factory.mktemp("fidelity") / "set"
    write_synthetic_split(root, "train", num_shards=2, per_shard=3, size=32, seed=3)
    generate(model="tiny", shards=str(root), k=K, batch_size=4, progress=False)
    return root


def test_generate_writes_scores_that_score_recomputes(scored, capsys):
    col = scored / "gen" / "tiny" / "train"
    man = read_manifest(col)
    assert man["fidelity"]["space"] == "clip-image" and man["fidelity"]["summary"]["n"] == 6 * K
    inline = dict(iter_scores(col))
    assert len(inline) == 6
    for doc in inline.values():
        assert len(doc["scores"]) == K and all(-1 <= s <= 1 for s in doc["scores"]) and doc["diversity"] <= 1
    assert read_stats(col, 0)["fidelity"]["n"] == 3 * K
    # the same column scored afterwards (another batch size), through the CLI
    assert cli_main(["score", "--shards", str(scored), "--gen", "tiny", "--batch-size", "5", "--no-progress"]) == 0
    assert "scores of tiny" in capsys.readouterr().out
    side = scored / "scores" / "tiny" / "train"
    later = dict(iter_scores(side))
    assert later.keys() == inline.keys()
    for key, doc in inline.items():
        assert doc["scores"] == pytest.approx(later[key]["scores"], abs=1e-5)
        assert doc["diversity"] == pytest.approx(later[key]["diversity"], abs=1e-5)
        assert (doc["blank"], doc["near_copy"]) == (later[key]["blank"], later[key]["near_copy"])
    assert read_manifest(side)["fidelity"]["summary"]["mean"] == pytest.approx(man["fidelity"]["summary"]["mean"])
    assert verify_set(str(scored))[1] == []
    before = {p.name: p.stat().st_mtime_ns for p in side.glob("*.tar")}
    assert score(str(scored), "tiny", progress=False)["shards"] == []  # done: a rerun does nothing
    assert {p.name: p.stat().st_mtime_ns for p in side.glob("*.tar")} == before
    with pytest.raises(GenaugError, match="--encoder swav for a non-IC-GAN column needs --weights"):
        score(str(scored), "tiny", encoder="swav", overwrite=True, progress=False)


def test_near_copy_and_blank_variants_are_flagged(scored):
    """A column made by another tool: variant 0 is the source itself, variant 1 a flat grey, variant 2 noise."""
    src = scored / "train"
    col = scored / "gen" / "copies" / "train"
    col.mkdir(parents=True)
    man = read_manifest(src)
    recipe = resolve_recipe("tiny", k=K)
    write_manifest(col, {"kind": "generated", "recipe": recipe, "recipe_hash": "x", "k": K, "shards": man["shards"]})
    import numpy as np

    rng = np.random.default_rng(0)
    for name in man["shards"]:
        samples = []
        for raw in iter_shard_raw(src / name):
            grey, noise = io.BytesIO(), io.BytesIO()
            Image.new("RGB", (32, 32), (90, 90, 90)).save(grey, format="JPEG", quality=95)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(noise, format="JPEG")
            s = {"__key__": raw["__key__"], "json": json.dumps({"failed": None})}
            s.update({"gen_0.jpg": raw["jpg"], "gen_1.jpg": grey.getvalue(), "gen_2.jpg": noise.getvalue()})
            samples.append(s)
        commit_shard(col, int(name[:6]), samples)
    with pytest.raises(GenaugError, match="--sort score needs fidelity scores.*genaug score"):
        from genaug.inspect import contact_sheet

        contact_sheet(scored, "copies", sort="score", out=scored / "x.png")
    out = score(str(scored), "copies", progress=False)
    assert out["summary"]["blank"] == 6 and out["summary"]["near_copy"] == 6
    for _, doc in iter_scores(scored / "scores" / "copies" / "train"):
        assert doc["near_copy"] == [0] and doc["blank"] == [1]
        assert doc["scores"][0] == pytest.approx(1.0, abs=1e-5)  # the source itself


def test_sorted_sheet_and_histogram(scored, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    argv = ["inspect", "--shards", str(scored), "--gen", "tiny", "--sort", "score", "--n", "4", "--out", str(out)]
    assert cli_main(argv) == 0
    assert "score histogram" in capsys.readouterr().out
    doc = json.loads(out.with_suffix(".json").read_text())
    hist = Path(doc["histogram"])
    assert hist == tmp_path / "scores-tiny-train.png" and Image.open(hist).format == "PNG"
    assert Image.open(out).format == "PNG" and doc["sort"] == "score"
    worst = [min(doc["fidelity"][k]["scores"]) for k in doc["keys"][:2]]
    best = [max(doc["fidelity"][k]["scores"]) for k in doc["keys"][2:]]
    every = dict(iter_scores(scored / "scores" / "tiny" / "train"))
    assert worst == sorted(min(d["scores"]) for d in every.values())[:2]
    assert best == sorted((max(d["scores"]) for d in every.values()), reverse=True)[:2]


def test_random_weight_scorer_is_marked_in_json_and_on_the_sheet(scored, tmp_path):
    """The tiny model's CLIP has random weights: its scores say so, in the manifests and the sheet's JSON/captions."""
    from genaug.generate.fidelity import random_weight_mark
    from genaug.inspect import contact_sheet

    assert read_manifest(scored / "gen" / "tiny" / "train")["fidelity"]["random_weights"] is True
    assert read_manifest(scored / "scores" / "tiny" / "train")["fidelity"]["random_weights"] is True
    assert random_weight_mark(resolve_recipe("sd")) == {}  # a real model's scorer is not marked
    out = contact_sheet(scored, "tiny", n=2, tile=32, out=tmp_path / "c.png")
    assert json.loads(out.with_suffix(".json").read_text())["scorer_random_weights"] is True
    side = scored / "scores" / "tiny" / "train"  # a scorer with real weights: the same sheet is not marked
    man = read_manifest(side)
    write_manifest(side, {**man, "fidelity": {k: v for k, v in man["fidelity"].items() if k != "random_weights"}})
    try:
        out = contact_sheet(scored, "tiny", n=2, tile=32, out=tmp_path / "d.png")
        assert json.loads(out.with_suffix(".json").read_text())["scorer_random_weights"] is False
    finally:
        write_manifest(side, man)
