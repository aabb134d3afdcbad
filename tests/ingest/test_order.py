"""Shard order: a seeded shuffled order by default, recorded and reproducible, classes mixed across shards; --order
sorted keeps the input's order and the plan hash of before; a split made before orders were recorded resumes sorted."""

import hashlib
import json
import os

import pytest

from genaug.core.errors import GenaugError
from genaug.ingest.images import ImageOptions
from genaug.ingest.run import ingest, shuffled_order
from genaug.ingest.sources import enumerate_source
from genaug.shards import iter_shard
from genaug.shards.reader import complete_shards
from genaug.shards.verify import verify_set
from genaug.testing.shards import write_image_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_image_tree(tmp_path_factory.mktemp("order") / "tree", classes=3, per_class=8, size=(16, 16))


def _ingest(tree, out, **kw):
    return ingest(tree, out, per_shard=6, workers=0, progress=False, **kw)


def _shards(folder):
    return [[x for x in iter_shard(p)] for p in complete_shards(folder)]


def test_shuffled_by_default_recorded_reproducible_and_mixed(tree, tmp_path):
    s = _ingest(tree, tmp_path / "a")
    assert s["order"] == "shuffled"
    folder = tmp_path / "a" / "train"
    man = json.loads((folder / "manifest.json").read_text())
    perm = shuffled_order(24, 0)
    assert man["order"] == {
        "kind": "shuffled",
        "seed": 0,
        "generator": "numpy PCG64 permutation",
        "sha256": hashlib.sha256(perm.astype("<i8").tobytes()).hexdigest(),
    }
    items = enumerate_source(tree).items  # the input order (ImageFolder's)
    shards = _shards(folder)
    flat = [x for sh in shards for x in sh]
    assert [x["json"]["index"] for x in flat] == perm.tolist()  # row i of the set is input item perm[i]
    for x in flat:  # keys and labels keep their meaning: each sample is its input item, with its own label
        it = items[x["json"]["index"]]
        assert x["json"]["source"] == os.path.relpath(it.ref, tree) and x["cls"] == it.label
        assert x["json"]["class_name"] == f"class{x['cls']}"
    assert all(len({x["cls"] for x in sh}) >= 2 for sh in shards)  # every shard mixes classes
    _ingest(tree, tmp_path / "s", order="sorted")
    sorted_shards = _shards(tmp_path / "s" / "train")
    assert {x["cls"] for x in sorted_shards[0]} == {0}  # the input order: shard 0 holds class 0 only
    _ingest(tree, tmp_path / "b")
    a, b = sorted(folder.glob("*.tar")), sorted((tmp_path / "b" / "train").glob("*.tar"))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]  # reproducible, byte for byte
    _ingest(tree, tmp_path / "c", order_seed=7)
    other = [x["json"]["index"] for sh in _shards(tmp_path / "c" / "train") for x in sh]
    assert other == shuffled_order(24, 7).tolist() != perm.tolist()
    assert verify_set(str(tmp_path / "a"))[1] == []


def _old_plan_hash(src, per_shard, opts):
    """The plan hash exactly as genaug computed it before orders existed (a copy, to pin the sorted plan)."""
    h = hashlib.sha256()
    h.update(json.dumps([src.layout, src.classes, per_shard, opts.__dict__], sort_keys=True).encode())
    for it in src.items:
        h.update(json.dumps(it.as_plan()).encode())
        h.update(b"\n")
    return h.hexdigest()


def test_sorted_keeps_the_old_plan_and_an_old_split_resumes_sorted(tree, tmp_path):
    _ingest(tree, tmp_path / "s", order="sorted")
    man = json.loads((tmp_path / "s" / "train" / "manifest.json").read_text())
    assert man["plan_hash"] == _old_plan_hash(enumerate_source(tree), 6, ImageOptions())
    assert man["order"] == {"kind": "sorted"}
    # a split written before genaug recorded an order and left unfinished: no "order", shards 2-3 not done
    crashed = tmp_path / "old"
    _ingest(tree, crashed, order="sorted")
    for name in ("000002.json", "000003.json"):
        (crashed / "train" / name).unlink()  # no stats: not done (as after a kill between tar and stats)
    path = crashed / "train" / "manifest.json"
    doc = json.loads(path.read_text())
    del doc["order"]
    path.write_text(json.dumps(doc))
    s = _ingest(tree, crashed)  # the same command as then, without --order: resumes the old (sorted) plan
    assert s["order"] == "sorted" and s["shards_skipped"] == 2 and s["shards_written"] == 2
    a, b = sorted((tmp_path / "s" / "train").glob("*.tar")), sorted((crashed / "train").glob("*.tar"))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    with pytest.raises(GenaugError, match="other settings"):  # asking for shuffled there is another plan
        _ingest(tree, crashed, order="shuffled")


@pytest.mark.parametrize(
    ("argv", "flag"), [(["--order", "random"], "--order"), (["--order", "sorted", "--order-seed", "3"], "--order-seed")]
)
def test_bad_order_flags_are_one_line(tree, tmp_path, capsys, argv, flag):
    from genaug.cli import main

    capsys.readouterr()
    assert main(["ingest", str(tree), "--shards", str(tmp_path / "s"), *argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"genaug: error: {flag}") and "\n" not in err
