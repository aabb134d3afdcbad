"""Ingest: layouts, labels in ImageFolder order, bad inputs recorded and skipped, resume, reproducible tars."""

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from ingest_helpers import rgb
from PIL import Image

from genaug.core.errors import GenaugError
from genaug.ingest.run import ingest
from genaug.ingest.sources import enumerate_source
from genaug.shards import iter_shard
from genaug.shards.reader import complete_shards
from genaug.shards.verify import verify_set


def _all(folder):
    return [s for p in complete_shards(folder) for s in iter_shard(p)]


def _failures(folder):
    out = {}
    for p in sorted(folder.glob("0*.json")):
        for f in json.loads(p.read_text())["failures"]:
            out[os.path.basename(f["source"])] = f["error"]
    return out


def test_bad_inputs_are_recorded_and_tricky_ones_converted(tricky_tree, tmp_path):
    s = ingest(tricky_tree, tmp_path / "set", per_shard=5, workers=0, progress=False)
    folder = tmp_path / "set" / "train"
    fails = _failures(folder)
    assert set(fails) == {
        "01_empty.jpg",
        "02_truncated.jpg",
        "03_text.jpg",
        "04_one_pixel.png",
        "05_bomb.png",
        "06_loop_a.jpg",
        "06_loop_b.jpg",
    }
    assert "zero-byte" in fails["01_empty.jpg"]
    assert "truncated" in fails["02_truncated.jpg"]
    assert "not a readable image" in fails["03_text.jpg"]
    assert "--min-side" in fails["04_one_pixel.png"]
    assert "--max-pixels" in fails["05_bomb.png"]
    assert "symbolic links" in fails["06_loop_a.jpg"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert any("loop" in x["error"] for x in manifest["scan_skipped"])  # the directory loop was not followed
    assert s["images_failed"] == 7 and s["images_written"] == 7
    by_name = {os.path.basename(x["json"]["source"]): x for x in _all(folder)}
    assert set(by_name) == {
        "01_rgb.jpg",
        "02_cmyk.jpg",
        "03_gray16.png",
        "04_palette_transparent.png",
        "05_alpha.png",
        "06_webp.webp",
        "07_bilevel.png",
    }
    for x in by_name.values():
        assert x["jpg"].mode == "RGB" and x["cls"] == 0
    assert abs(int(np.asarray(by_name["03_gray16.png"]["jpg"]).mean()) - 128) <= 2  # 16-bit scaled, not clipped
    pal = np.asarray(by_name["04_palette_transparent.png"]["jpg"]).astype(int)
    assert (np.abs(pal - 255) < 8).all()  # transparent palette index composited on white
    alpha = np.asarray(by_name["05_alpha.png"]["jpg"]).astype(int)
    assert alpha[2, 5, 1] > 240 and alpha[2, 5, 0] < 20 and (alpha[17, 5] > 240).all()
    assert verify_set(str(tmp_path / "set"))[1] == []


def test_permission_denied_is_recorded(tmp_path, monkeypatch):
    root = tmp_path / "flat"
    root.mkdir()
    rgb(seed=1).save(root / "a.jpg")
    rgb(seed=2).save(root / "b.jpg")
    if os.geteuid() != 0:
        os.chmod(root / "b.jpg", 0)
    else:  # root reads anything: make the open itself fail as it would for another user
        real_open = os.open

        def guarded(path, *a, **k):
            if str(path).endswith("b.jpg"):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *a, **k)

        monkeypatch.setattr(os, "open", guarded)  # read_file opens with os.open (O_NONBLOCK, then fstat)
    s = ingest(root, tmp_path / "set", layout="flat", workers=0, progress=False)
    monkeypatch.undo()
    assert s["images_written"] == 1
    assert "Permission denied" in _failures(tmp_path / "set" / "train")["b.jpg"]


def test_imagefolder_order_and_labels_match_torchvision(tmp_path):
    from torchvision.datasets import ImageFolder

    root = tmp_path / "tree"
    for c in ["zebra", "Apple", "mango", "apple"]:
        (root / c / "sub").mkdir(parents=True)
        for name in ["b.png", "A.jpg", "sub/c.JPEG", "a.jpg"]:
            rgb(seed=len(c)).save(root / c / name)
    src = enumerate_source(root)
    tv = ImageFolder(str(root))
    assert src.classes == tv.classes
    assert [(it.ref, it.label) for it in src.items] == [(p, y) for p, y in tv.samples]


def test_flat_and_wds_layouts(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        rgb(seed=i).save(flat / f"{i}.png")
    ingest(flat, tmp_path / "a", per_shard=2, workers=0, progress=False)
    a = _all(tmp_path / "a" / "train")
    assert len(a) == 3 and all("cls" not in x for x in a)
    # existing WebDataset tars (e.g. from another tool) with labels, re-ingested
    labeled = tmp_path / "labeled"
    for c in ["x", "y"]:
        (labeled / c).mkdir(parents=True)
        rgb(seed=ord(c)).save(labeled / c / "1.jpg")
    ingest(labeled, tmp_path / "b", per_shard=1, workers=0, progress=False)
    tars = tmp_path / "tars"
    tars.mkdir()
    for p in sorted((tmp_path / "b" / "train").glob("*.tar")):
        (tars / p.name).write_bytes(p.read_bytes())
    s = ingest(tars, tmp_path / "c", workers=0, progress=False)
    assert s["layout"] == "wds"
    c = _all(tmp_path / "c" / "train")
    assert [x["cls"] for x in c] == [0, 1]
    b = _all(tmp_path / "b" / "train")
    assert [np.asarray(x["jpg"]).tobytes() for x in c] == [np.asarray(x["jpg"]).tobytes() for x in b]


def test_resize_short_side_and_passthrough(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    rgb(400, 300, seed=1).save(root / "big.jpg", quality=90)
    rgb(100, 80, seed=2).save(root / "small.jpg", quality=90)
    ingest(root, tmp_path / "s", short_side=150, workers=0, progress=False)
    by = {x["json"]["source"]: x for x in _all(tmp_path / "s" / "train")}
    assert by["big.jpg"]["jpg"].size == (200, 150)
    assert by["small.jpg"]["json"]["stored"] == "original"  # already small: stored as it is, never re-encoded
    raw = tarfile.open(next((tmp_path / "s" / "train").glob("*.tar")))
    member = [m for m in raw.getmembers() if m.name.endswith(".jpg")][1]
    assert raw.extractfile(member).read() == (root / "small.jpg").read_bytes()


def test_two_runs_give_byte_identical_tars(tricky_tree, tmp_path):
    ingest(tricky_tree, tmp_path / "one", per_shard=4, workers=2, progress=False)
    ingest(tricky_tree, tmp_path / "two", per_shard=4, workers=0, progress=False)
    one = sorted((tmp_path / "one" / "train").glob("*.tar"))
    two = sorted((tmp_path / "two" / "train").glob("*.tar"))
    assert len(one) == len(two) == 4
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]


def test_resume_after_kill_equals_clean_run(tricky_tree, tmp_path):
    clean = tmp_path / "clean"
    ingest(tricky_tree, clean, per_shard=3, workers=0, progress=False)
    crashed = tmp_path / "crashed"
    code = (
        "import sys; from genaug.ingest.run import ingest; "
        f"ingest({str(tricky_tree)!r}, {str(crashed)!r}, per_shard=3, workers=0, progress=False)"
    )
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, GENAUG_FAULT="tar-renamed:2"))
    assert r.returncode == -9
    folder = crashed / "train"
    done_before = {p.name: p.stat().st_mtime_ns for p in complete_shards(folder)}
    assert sorted(done_before) == ["000000.tar", "000001.tar"]
    assert verify_set(str(crashed))[1]  # incomplete: verify says so
    s = ingest(tricky_tree, crashed, per_shard=3, workers=0, progress=False)
    assert s["shards_skipped"] == 2 and s["shards_written"] == 3
    assert {p.name: p.stat().st_mtime_ns for p in complete_shards(folder)[:2]} == done_before  # not rewritten
    assert verify_set(str(crashed))[1] == []
    for a, b in zip(sorted((clean / "train").glob("*.tar")), sorted(folder.glob("*.tar")), strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_rerun_with_other_settings_is_refused(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    rgb(seed=1).save(root / "a.jpg")
    ingest(root, tmp_path / "s", workers=0, progress=False)
    with pytest.raises(GenaugError, match="other settings"):
        ingest(root, tmp_path / "s", quality=50, workers=0, progress=False)
    ingest(root, tmp_path / "s", quality=50, workers=0, progress=False, overwrite=True)


def test_gray_jpeg_and_huge_real_image(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    Image.new("L", (30, 30), 77).save(root / "gray.jpg")
    Image.new("RGB", (3000, 2000), (5, 6, 7)).save(root / "large.jpg")
    s = ingest(root, tmp_path / "s", max_pixels=5_000_000, workers=0, progress=False)
    assert s["images_written"] == 1
    (x,) = _all(tmp_path / "s" / "train")
    assert x["jpg"].mode == "RGB" and abs(int(np.asarray(x["jpg"])[..., 0].mean()) - 77) <= 2
