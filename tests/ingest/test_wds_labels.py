"""WebDataset sources in img2dataset's output layout: labels from the sample's .json (--label-key json.label), class
names mapped to ids in a recorded order, `.txt` captions kept as the shard field `txt`.

img2dataset itself is not a test dependency: it pins webdataset<0.3 and pandas<3 (genaug needs webdataset>=1.0.2,
and `datasets` brings pandas 3) and pulls wandb, albumentations and opencv, so it cannot be installed beside
genaug. The test writes img2dataset's `--output_format webdataset --save_additional_columns '["label"]'` layout
itself: NNNNN.tar with <key>.jpg, <key>.json (url, key, status, error_message, sizes, caption and the additional
columns), <key>.txt (the caption), and NNNNN.parquet and NNNNN_stats.json beside each tar.
"""

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from genaug.data.stream import build_eval_loader
from genaug.ingest.run import ingest
from genaug.shards import iter_shard
from genaug.shards.reader import complete_shards
from genaug.shards.verify import verify_set

#: class names as an img2dataset user's additional column holds them (not in sorted order of appearance)
LABELS = ["tabby cat", "beagle", "tabby cat", "axolotl", "beagle", "tabby cat", "axolotl", "beagle", "axolotl"]
NO_LABEL, BAD_IMAGE, BAD_CAPTION = 4, 6, 7


def _jpeg(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def write_img2dataset_output(root, per_shard: int = 5):
    """img2dataset's webdataset output of len(LABELS) rows (keys 000000000, ...); returns {key: row}."""
    root.mkdir(parents=True)
    rows = {}
    for shard in range((len(LABELS) + per_shard - 1) // per_shard):
        table = []
        with tarfile.open(root / f"{shard:05d}.tar", "w") as tf:
            for i in range(shard * per_shard, min(len(LABELS), (shard + 1) * per_shard)):
                key = f"{shard:05d}{i % per_shard:04d}"
                caption = f"a photo of a {LABELS[i]}, number {i}"
                meta = {
                    "url": f"http://127.0.0.1:8000/img{i}.jpg",
                    "key": key,
                    "status": "success",
                    "error_message": None,
                    "width": 24,
                    "height": 20,
                    "original_width": 24,
                    "original_height": 20,
                    "exif": "{}",
                    "sha256": None,
                    "caption": caption,
                    "label": LABELS[i],
                }
                if i == NO_LABEL:
                    del meta["label"]  # a row whose additional column was empty
                image = b"\xff\xd8 not a jpeg at all" if i == BAD_IMAGE else _jpeg(i)
                text = b"caf\xe9 \xff broken utf-8" if i == BAD_CAPTION else caption.encode()
                _add(tf, f"{key}.jpg", image)
                _add(tf, f"{key}.json", json.dumps(meta).encode())
                _add(tf, f"{key}.txt", text)
                rows[key] = i
                table.append(meta)
        (root / f"{shard:05d}.parquet").write_bytes(b"PAR1")  # beside the tar, as img2dataset writes; not read
        stats = {"count": len(table), "successes": len(table), "failed_to_download": 0, "status_dict": {"success": 5}}
        (root / f"{shard:05d}_stats.json").write_text(json.dumps(stats))
    return rows


def test_img2dataset_labels_from_json_and_captions(tmp_path):
    src = tmp_path / "i2d"
    rows = write_img2dataset_output(src)
    s = ingest(src, tmp_path / "set", per_shard=4, workers=0, progress=False, label_key="json.label")
    assert s["layout"] == "wds" and s["classes"] == 3 and s["images_failed"] == 2
    folder = tmp_path / "set" / "train"
    man = json.loads((folder / "manifest.json").read_text())
    classes = sorted(set(LABELS))
    assert man["classes"] == classes and man["label_key"] == "json.label"
    got = [x for p in complete_shards(folder) for x in iter_shard(p)]
    assert len(got) == len(LABELS) - 2
    for x in got:
        i = rows[x["json"]["source"].rsplit(":", 1)[1]]
        assert classes[x["cls"]] == LABELS[i] == x["json"]["class_name"]
        if i == BAD_CAPTION:
            assert x["txt"] == "caf\ufffd \ufffd broken utf-8"  # invalid UTF-8 replaced, never a reader crash
        else:
            assert x["txt"] == f"a photo of a {LABELS[i]}, number {i}"
    failures = {f["source"].rsplit(":", 1)[1]: f["error"] for p in folder.glob("0*.json") for f in _stats(p)}
    by_row = {rows[k]: e for k, e in failures.items()}
    assert set(by_row) == {NO_LABEL, BAD_IMAGE}
    assert "no json.label" in by_row[NO_LABEL] and "not a readable image" in by_row[BAD_IMAGE]
    assert verify_set(str(tmp_path / "set"))[1] == []  # verify needs cls on every sample: the classes are known
    ev = build_eval_loader(tmp_path / "set", "train", views_recipe={"preset": "small", "size": 16}, num_workers=0)
    labels = {k: int(y) for b in ev for k, y in zip(b["key"], b["label"], strict=True)}
    assert labels == {x["__key__"]: x["cls"] for x in got}


def _stats(p):
    return json.loads(p.read_text())["failures"]


def test_label_key_plain_field_and_integer_json_labels(tmp_path):
    src = tmp_path / "tars"
    src.mkdir()
    with tarfile.open(src / "a.tar", "w") as tf:
        for i, (cls, y) in enumerate([(b"dog\n", 7), (b"cat", 2), (b"3", 0)]):
            _add(tf, f"k{i}.png", _png(i))
            _add(tf, f"k{i}.label", cls)
            _add(tf, f"k{i}.json", json.dumps({"meta": {"y": y}}).encode())
    s = ingest(src, tmp_path / "a", workers=0, progress=False, label_key="label", order="sorted")
    got = [x for p in complete_shards(tmp_path / "a" / "train") for x in iter_shard(p)]
    # names are mapped in sorted order; the bare integer "3" cannot be matched to a name: a recorded failure
    assert [(x["cls"], x["json"]["class_name"]) for x in got] == [(1, "dog"), (0, "cat")] and s["images_failed"] == 1
    ingest(src, tmp_path / "b", workers=0, progress=False, label_key="json.meta.y", order="sorted")
    man = json.loads((tmp_path / "b" / "train" / "manifest.json").read_text())
    assert man["classes"] is None  # integer ids without names, as with .cls
    assert [x["cls"] for p in complete_shards(tmp_path / "b" / "train") for x in iter_shard(p)] == [7, 2, 0]


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("key", "fix"),
    [
        ("meta.label", "only the `json` field"),
        ("json..x", "not a field or JSON path"),
        ("", "not a field or JSON path"),
    ],
)
def test_bad_label_key_is_one_line(tmp_path, capsys, key, fix):
    from genaug.cli import main

    src = tmp_path / "i2d"
    write_img2dataset_output(src)
    capsys.readouterr()
    assert main(["ingest", str(src), "--shards", str(tmp_path / "s"), "--label-key", key, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genaug: error: --label-key") and fix in err and "\n" not in err


def test_shards_do_not_depend_on_where_the_source_lies(tmp_path, monkeypatch):
    """One set of tars ingested from two folders, given relative and absolute: byte-identical shards, whose samples
    name their source relative to the source folder (`00000.tar:key`, never the machine's paths)."""
    import shutil

    write_img2dataset_output(tmp_path / "a" / "i2d")
    shutil.copytree(tmp_path / "a" / "i2d", tmp_path / "b" / "deeper" / "i2d")
    monkeypatch.chdir(tmp_path / "a")
    ingest("i2d", tmp_path / "s1", per_shard=4, workers=0, progress=False, label_key="json.label")
    ingest(tmp_path / "b" / "deeper" / "i2d", tmp_path / "s2", per_shard=4, workers=0, progress=False,
           label_key="json.label")  # fmt: skip
    one, two = sorted((tmp_path / "s1" / "train").glob("*.tar")), sorted((tmp_path / "s2" / "train").glob("*.tar"))
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two] and one
    sources = [x["json"]["source"] for p in complete_shards(tmp_path / "s1" / "train") for x in iter_shard(p)]
    assert all(s.split(":")[0] in ("00000.tar", "00001.tar") for s in sources), sources
