"""Hugging Face `datasets` sources: save_to_disk and parquet keep ClassLabel ids and names, bad rows are recorded,
a killed ingest resumes, training and evaluation read what ingest wrote, and bad input is one line naming the flag."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from genaug.ingest.run import ingest
from genaug.shards import iter_shard
from genaug.shards.reader import complete_shards
from genaug.shards.verify import verify_set

datasets = pytest.importorskip("datasets")  # in the `test` extra; the skip only helps a bare install

#: a ClassLabel order that is not sorted: genaug must keep it, not re-sort it
NAMES = ["zebra", "apple", "mango", "kiwi"]
BAD_ROW = 5


def _png(label: int, seed: int) -> bytes:
    """A smooth image: a colour per label plus a low-frequency pattern per row (JPEG keeps it within a few levels)."""
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 80, (3, 3, 3), dtype=np.uint8)).resize((28, 24), Image.BILINEAR)
    arr = np.asarray(low).astype(int) + 40 * label
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _dataset(n: int = 22):
    labels = [(3 * i + 1) % len(NAMES) for i in range(n)]
    images = [{"bytes": _png(y, i), "path": None} for i, y in enumerate(labels)]
    images[BAD_ROW] = {"bytes": b"\x89PNG this is not an image", "path": None}  # undecodable: a recorded bad row
    features = datasets.Features(
        {
            "caption": datasets.Value("string"),
            "img": datasets.Image(),
            "score": datasets.Value("float32"),
            "fine": datasets.ClassLabel(names=NAMES),
        }
    )
    cols = {"caption": [f"row {i}" for i in range(n)], "img": images, "score": [0.5] * n, "fine": labels}
    return datasets.Dataset.from_dict(cols, features=features)


@pytest.fixture(scope="module")
def hf_sources(tmp_path_factory):
    """The same dataset as a save_to_disk folder, one parquet file, and a folder of two parquet files."""
    root = tmp_path_factory.mktemp("hf")
    ds = _dataset()
    ds.save_to_disk(str(root / "saved"))
    ds.to_parquet(str(root / "one.parquet"))
    (root / "pq").mkdir()
    half = len(ds) // 2
    ds.select(range(half)).to_parquet(str(root / "pq" / "part-0.parquet"))
    ds.select(range(half, len(ds))).to_parquet(str(root / "pq" / "part-1.parquet"))
    return ds, root


def _samples(folder):
    return [s for p in complete_shards(folder) for s in iter_shard(p)]


def _failures(folder):
    return [f for p in sorted(folder.glob("0*.json")) for f in json.loads(p.read_text())["failures"]]


def _ingest(src, out, **kw):
    kw.setdefault("per_shard", 5)
    return ingest(src, out, workers=0, progress=False, **kw)


def test_save_to_disk_and_parquet_keep_classlabel_ids_and_names(hf_sources, tmp_path):
    ds, root = hf_sources
    feature = ds.features["fine"]
    cache = str(tmp_path / "cache")
    outs = {}
    for name, src in (("saved", root / "saved"), ("one", root / "one.parquet"), ("pq", root / "pq")):
        s = _ingest(src, tmp_path / name, hf=_hf(cache_dir=cache))
        assert s["layout"] == "hf" and s["classes"] == len(NAMES) and s["images_failed"] == 1
        folder = tmp_path / name / "train"
        man = json.loads((folder / "manifest.json").read_text())
        assert man["classes"] == feature.names == NAMES  # the dataset's own order, not sorted
        assert man["hf"]["image_column"] == "img" and man["hf"]["label_column"] == "fine"
        assert man["hf"]["label_type"] == "ClassLabel" and man["order"]["kind"] == "shuffled"
        got = _samples(folder)
        assert len(got) == len(ds) - 1
        pixels = [np.asarray(ds[r]["img"].convert("RGB"), dtype=int) if r != BAD_ROW else None for r in range(len(ds))]
        for x in got:
            row = x["json"]["index"]
            assert x["json"]["source"] == f"row {row}"
            assert x["cls"] == ds[row]["fine"]
            assert x["json"]["class_name"] == feature.int2str(ds[row]["fine"])
            dist = [np.inf if p is None else np.abs(np.asarray(x["jpg"], dtype=int) - p).mean() for p in pixels]
            assert int(np.argmin(dist)) == row and dist[row] < 3  # the row's own image (stored as JPEG q95)
        (fail,) = _failures(folder)
        assert fail["source"] == f"row {BAD_ROW}" and "not a readable image" in fail["error"]
        assert verify_set(str(tmp_path / name))[1] == []
        outs[name] = [p.read_bytes() for p in sorted(folder.glob("*.tar"))]
    assert outs["saved"] == outs["one"] == outs["pq"]  # three forms of one dataset: the same shards, byte for byte


def _hf(**kw):
    from genaug.ingest.hf import HFOptions

    return HFOptions(**kw)


def test_downstream_training_and_evaluation_read_the_labels(hf_sources, tmp_path):
    from genaug.data.stream import build_eval_loader, build_train_loader

    ds, root = hf_sources
    _ingest(root / "saved", tmp_path / "set", split="val")
    by_key = {x["__key__"]: ds[x["json"]["index"]]["fine"] for x in _samples(tmp_path / "set" / "val")}
    ev = list(build_eval_loader(tmp_path / "set", "val", views_recipe={"preset": "small", "size": 16}, num_workers=0))
    got = {k: int(y) for b in ev for k, y in zip(b["key"], b["label"], strict=True)}
    assert got == by_key and len(got) == len(ds) - 1
    views = {"preset": "simclr", "size": 16}
    batch = next(iter(build_train_loader(tmp_path / "set", "val", views_recipe=views, batch_size=4, num_workers=0)))
    assert batch["views"][0].shape == (4, 3, 16, 16)
    assert [int(y) for y in batch["label"]] == [by_key[k] for k in batch["key"]]


def test_resume_after_kill_equals_clean_run(hf_sources, tmp_path):
    _, root = hf_sources
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    _ingest(root / "saved", clean)
    code = (
        "from genaug.ingest.run import ingest; "
        f"ingest({str(root / 'saved')!r}, {str(crashed)!r}, per_shard=5, workers=0, progress=False)"
    )
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, GENAUG_FAULT="tar-renamed:2"))
    assert r.returncode == -9
    assert [p.name for p in complete_shards(crashed / "train")] == ["000000.tar", "000001.tar"]
    s = _ingest(root / "saved", crashed)
    assert s["shards_skipped"] == 2 and s["shards_written"] == 3
    assert verify_set(str(crashed))[1] == []
    a, b = sorted((clean / "train").glob("*.tar")), sorted((crashed / "train").glob("*.tar"))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_string_and_int_label_columns_and_a_dataset_dict(tmp_path):
    n = 8
    feats = datasets.Features(
        {"image": datasets.Image(), "name": datasets.Value("string"), "y": datasets.Value("int64")}
    )
    names = ["owl", "bee", "owl", "cat", "bee", "owl", "cat", "ant"]
    cols = {"image": [{"bytes": _png(i % 3, i), "path": None} for i in range(n)], "name": names, "y": list(range(n))}
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(cols, features=feats),
            "test": datasets.Dataset.from_dict(cols, features=feats),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    _ingest(tmp_path / "dd", tmp_path / "a", hf=_hf(label_column="name"), order="sorted")  # --split train picks train
    man = json.loads((tmp_path / "a" / "train" / "manifest.json").read_text())
    assert man["classes"] == ["ant", "bee", "cat", "owl"] and man["hf"]["split"] == "train"
    assert [man["classes"][x["cls"]] for x in _samples(tmp_path / "a" / "train")] == names
    _ingest(tmp_path / "dd", tmp_path / "b", split="val", hf=_hf(label_column="y", split="test"), order="sorted")
    man = json.loads((tmp_path / "b" / "val" / "manifest.json").read_text())
    assert man["classes"] is None and man["hf"]["split"] == "test"
    assert [x["cls"] for x in _samples(tmp_path / "b" / "val")] == list(range(n))
    # parquet deeper than the top of the folder (a hub repository's data/ layout): --layout hf finds it
    dd["train"].to_parquet(str(tmp_path / "repo" / "data" / "train-00000-of-00001.parquet"))
    s = _ingest(tmp_path / "repo", tmp_path / "c", layout="hf", hf=_hf(label_column="name"))
    assert s["images_written"] == n and s["classes"] == 4


def _one_line(argv, capsys):
    from genaug.cli import main

    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genaug: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_is_one_line_naming_the_flag(hf_sources, tmp_path, capsys):
    _, root = hf_sources
    no_image = tmp_path / "no_image"
    datasets.Dataset.from_dict({"x": [1, 2], "label": [0, 1]}).save_to_disk(str(no_image))
    base = ["ingest", "--shards", str(tmp_path / "set"), "--workers", "0", "--quiet"]
    err = _one_line([*base, str(no_image)], capsys)
    assert "--image-column" in err and "no Image column" in err
    err = _one_line([*base, str(root / "saved"), "--label-column", "score"], capsys)
    assert "--label-column 'score' is a Value float32 column, not a ClassLabel, integer or string column" in err
    err = _one_line([*base, str(root / "saved"), "--image-column", "caption"], capsys)
    assert "--image-column 'caption'" in err
    err = _one_line([*base, str(root / "saved"), "--hf-split", "test"], capsys)
    assert "--hf-split" in err
    err = _one_line([*base, str(root / "saved"), "--label-key", "json.label"], capsys)
    assert "--label-key" in err
    (tmp_path / "empty").mkdir()
    err = _one_line([*base, str(tmp_path / "empty"), "--layout", "hf"], capsys)
    assert "holds no .parquet files and is not a `datasets` save_to_disk folder (--layout hf)" in err


def test_missing_datasets_package_is_one_line(hf_sources, tmp_path, capsys, monkeypatch):
    _, root = hf_sources
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError, as when not installed
    err = _one_line(["ingest", str(root / "saved"), "--shards", str(tmp_path / "s"), "--quiet"], capsys)
    assert (
        err.startswith("genaug: error: --layout hf needs the Hugging Face `datasets` package") and "genaug[hf]" in err
    )


def test_offline_hub_name_is_one_line(tmp_path):
    """A hub name goes through the same load_dataset call as parquet; offline here, it fails as one line."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    argv = ["ingest", "someone/some-set", "--layout", "hf", "--hf-config", "default", "--hf-split", "train"]
    code = f"import sys; from genaug.cli import main; sys.exit(main({argv + ['--shards', str(tmp_path / 's')]!r}))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    err = r.stderr.strip()
    assert r.returncode == 2 and "\n" not in err, err
    assert "cannot load the Hugging Face dataset 'someone/some-set'" in err and "--hf-config default" in err
