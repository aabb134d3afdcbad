"""Contact sheets over a real generated column aligned with a synthetic source split."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from genaug.cli import main
from genaug.core.errors import GenaugError
from genaug.inspect import BLANK, contact_sheet, fit_tile, sheet_size, tile_box, views_sheet
from genaug.shards.layout import shard_name
from genaug.shards.manifest import write_manifest
from genaug.shards.reader import decode_image, iter_shard_raw
from genaug.shards.writer import commit_shard
from genaug.testing.shards import write_synthetic_split

K = 3
FAILED_KEY = "s000001r000002"


def _color(key, k):
    h = sum(map(ord, key))
    return ((40 * k + h) % 256, (90 + 70 * k) % 256, (h * 7) % 256)


def _jpeg(img):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def gen_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect") / "set"
    src = write_synthetic_split(root, "train", num_shards=2, per_shard=4, size=24, num_classes=2, seed=0)
    col = root / "gen" / "tiny" / "train"
    col.mkdir(parents=True)
    write_manifest(
        col,
        {
            "kind": "generated",
            "k": K,
            "recipe_hash": "abc123",
            "source_split": "train",
            "shards": [shard_name(0), shard_name(1)],
            "recipe": {"name": "tiny"},
        },
    )
    for i in range(2):
        samples = []
        for s in iter_shard_raw(src / shard_name(i)):
            key = s["__key__"]
            if key == FAILED_KEY:
                samples.append({"__key__": key, "json": json.dumps({"seeds": [], "failed": "CUDA OOM"})})
                continue
            smp = {"__key__": key, "json": json.dumps({"seeds": [1, 2, 3], "recipe_hash": "abc123", "failed": None})}
            for k in range(K):
                smp[f"gen_{k}.jpg"] = _jpeg(Image.new("RGB", (24, 24), _color(key, k)))
            samples.append(smp)
        commit_shard(col, i, samples, ("json",), {"failures": [{"key": FAILED_KEY, "error": "CUDA OOM"}]})
    return root


def _source(root, key):
    for tar in sorted((root / "train").glob("*.tar")):
        for s in iter_shard_raw(tar):
            if s["__key__"] == key:
                return decode_image(s["jpg"])
    raise KeyError(key)


def test_contact_sheet_size_and_tiles(gen_set, tmp_path):
    keys = ["s000001r000003", FAILED_KEY, "s000000r000000"]
    out = contact_sheet(gen_set, "tiny", keys=keys, tile=20, pad=3, labels=False, out=tmp_path / "c.png")
    sheet = Image.open(out).convert("RGB")
    assert sheet.size == sheet_size(3, 1 + K, 20, 3, False) == ((1 + K) * 20 + (K + 2) * 3, 3 * 20 + 4 * 3)
    arr = np.asarray(sheet).astype(int)

    def tile(r, c):
        x0, y0, x1, y1 = tile_box(r, c, 20, 3, False)
        return arr[y0:y1, x0:x1]

    for r, key in enumerate(keys):
        assert np.array_equal(tile(r, 0), np.asarray(fit_tile(_source(gen_set, key), 20)))  # source, exact
        for k in range(K):
            want = BLANK if key == FAILED_KEY else _color(key, k)
            assert np.abs(tile(r, 1 + k) - np.array(want)).max() <= 6, (key, k)  # jpeg of a flat colour
    assert (arr[0:3] == 255).all()  # padding stays background
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["keys"] == keys and meta["failed"] == {FAILED_KEY: "CUDA OOM"} and meta["columns"][1] == "gen_0"


def test_random_keys_are_seeded_and_labels_add_strips(gen_set, tmp_path):
    a = contact_sheet(gen_set, None, n=5, seed=3, tile=16, out=tmp_path / "a.png")  # the only column
    b = contact_sheet(gen_set, "tiny", n=5, seed=3, tile=16, out=tmp_path / "b.png")
    ka = json.loads(a.with_suffix(".json").read_text())["keys"]
    assert ka == json.loads(b.with_suffix(".json").read_text())["keys"] and len(set(ka)) == 5
    assert Image.open(a).size == sheet_size(5, 1 + K, 16, 2, True) == (4 * 16 + 5 * 2, 5 * (16 + 12) + 6 * 2)


def test_views_sheet_replaces_at_p(gen_set, tmp_path):
    keys = ["s000000r000001", "s000000r000002"]
    # the trainer's views from a user recipe: big crops, no colour stage, so pixels tell source from variant
    plain = {"scale": [0.6, 1.0], "flip": 0.5, "jitter": {"p": 0.0}, "grayscale": 0.0, "blur": {"p": 0.0}}
    recipe = tmp_path / "plain.yaml"
    recipe.write_text(json.dumps({"method": "simclr", "views": {"size": 16, "global": [plain, plain]}}))
    for p in (0.0, 1.0):
        out = views_sheet(
            gen_set,
            "tiny",
            p=p,
            keys=keys,
            pairs=2,
            tile=16,
            labels=False,
            view_size=16,
            out=tmp_path / f"v{p}.png",
            method=str(recipe),
        )
        sheet = Image.open(out).convert("RGB")
        assert sheet.size == sheet_size(2, 1 + 2 * 2, 16, 2, False)
        arr = np.asarray(sheet).astype(int)
        meta = json.loads(out.with_suffix(".json").read_text())
        for r, key in enumerate(keys):
            assert meta["replaced"][key] == [p == 1.0] * 4
            for c in range(1, 5):
                x0, y0, x1, y1 = tile_box(r, c, 16, 2, False)
                t = arr[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2]  # inside the marker border
                flat = np.abs(t - t.mean((0, 1))).max() <= 8
                assert flat == (p == 1.0)  # generated variants here are flat colours; sources are textured
                if p == 1.0:
                    assert min(np.abs(t.mean((0, 1)) - _color(key, k)).max() for k in range(K)) <= 6
    # a failed sample keeps its source at any p
    out = views_sheet(gen_set, "tiny", p=1.0, keys=[FAILED_KEY], pairs=1, tile=16, view_size=16, out=tmp_path / "f.png")
    assert json.loads(out.with_suffix(".json").read_text())["replaced"][FAILED_KEY] == [False, False]


def test_custom_make_views_and_errors(gen_set, tmp_path):
    calls = []

    def mv(src, variants, p, rng):
        calls.append((len(variants), p))
        return src, src  # the two-element form is accepted

    views_sheet(gen_set, "tiny", p=0.3, keys=["s000000r000000"], pairs=2, make_views=mv, out=tmp_path / "m.png")
    assert calls == [(K, 0.3), (K, 0.3)]
    with pytest.raises(GenaugError, match="not in split"):
        contact_sheet(gen_set, "tiny", keys=["s000000r000099"], out=tmp_path / "x.png")
    with pytest.raises(GenaugError, match="run `genaug generate"):
        contact_sheet(gen_set, "sd", out=tmp_path / "x.png")
    with pytest.raises(GenaugError, match=r"--p must lie in \[0, 1\]"):
        views_sheet(gen_set, "tiny", p=1.5, out=tmp_path / "x.png")


def test_cli(gen_set, tmp_path, capsys):
    out = tmp_path / "cli.png"
    assert (
        main(
            [
                "inspect",
                "--shards",
                str(gen_set),
                "--gen",
                "tiny",
                "--keys",
                "s000000r000000,s000001r000001",
                "--tile",
                "16",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert Image.open(out).size == sheet_size(2, 1 + K, 16, 2, True)
    assert "contact sheet" in capsys.readouterr().out
    assert (
        main(
            [
                "inspect",
                "--shards",
                str(gen_set),
                "--views",
                "--p",
                "0.5",
                "--n",
                "2",
                "--tile",
                "16",
                "--view-size",
                "16",
                "--out",
                str(tmp_path / "v.png"),
            ]
        )
        == 0
    )
    assert main(["inspect", "--shards", str(tmp_path / "nope")]) == 2


def test_views_are_the_trainers_own_draws(gen_set):
    """The sheet's views are what a training run with that seed sees (its loader at batch 4, not the sheet's 1)."""
    import torch

    from genaug.data.stream import build_train_loader
    from genaug.inspect import trainer_draws

    views = {"preset": "simclr", "size": 16}
    loader = build_train_loader(
        gen_set, gen_columns=["tiny"], p=0.5, views_recipe=views, batch_size=4, num_workers=0, seed=5
    )
    batch = next(iter(loader))
    keys, draws = trainer_draws(gen_set, "tiny", "train", 0.5, views, "each", 5, None, 4, 1)
    assert keys == batch["key"]
    for i, key in enumerate(keys):
        got, replaced = draws[key][0]
        assert replaced == batch["replaced"][i].tolist()
        for v in range(2):
            assert torch.equal(got[v], batch["views"][v][i])


def test_views_sheet_draws_with_the_runs_resolved_views(gen_set, tmp_path):
    """--run takes the views the run resolved and trained with: a run of the shipped views draws what --method draws
    at that size; a run with overrides (no colour stage, whole-image crops) draws other views."""
    import yaml

    from genaug.core.recipes import load_recipe

    shipped = {**load_recipe("trainers", "simclr")["views"], "size": 16}
    plain = {"scale": [1.0, 1.0], "ratio": [1.0, 1.0], "flip": 0.0, "jitter": {"p": 0.0}, "grayscale": 0.0}
    plain |= {"blur": {"p": 0.0}}
    runs = {}
    for name, views in (("shipped", shipped), ("override", {"size": 16, "global": [plain, plain]})):
        runs[name] = tmp_path / name
        runs[name].mkdir()
        (runs[name] / "recipe.yaml").write_text(yaml.safe_dump({"method": "simclr", "views": views}))
    kw = dict(keys=["s000000r000001"], pairs=1, tile=16, labels=False, p=0.0)
    by_method = views_sheet(gen_set, "tiny", view_size=16, out=tmp_path / "m.png", **kw)
    by_run = views_sheet(gen_set, "tiny", run=runs["shipped"], out=tmp_path / "r.png", **kw)
    assert np.array_equal(np.asarray(Image.open(by_method)), np.asarray(Image.open(by_run)))
    over = views_sheet(gen_set, "tiny", run=runs["override"], out=tmp_path / "o.png", **kw)
    assert not np.array_equal(np.asarray(Image.open(by_method)), np.asarray(Image.open(over)))
    arr = np.asarray(Image.open(over).convert("RGB")).astype(int)
    a, b = (arr[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] for x0, y0, x1, y1 in (tile_box(0, c, 16, 2, False) for c in (1, 2)))
    assert np.abs(a - b).max() <= 2  # whole-image views without colour stage: both views are the same picture
    assert json.loads(over.with_suffix(".json").read_text())["views_from"] == str(runs["override"] / "recipe.yaml")
    with pytest.raises(GenaugError, match="training run folder"):
        views_sheet(gen_set, "tiny", run=tmp_path / "nope", out=tmp_path / "x.png", **kw)


def test_cli_views_take_every_drawing_flag(gen_set, tmp_path):
    """`inspect --views` hands --p, --pairs, --view-size, --method, --mix-views and --run to the views sheet (its
    sidecar JSON records what it drew with)."""
    out = tmp_path / "views.png"
    argv = ["inspect", "--shards", str(gen_set), "--gen", "tiny", "--views", "--keys", "s000000r000001", "--tile", "16",
            "--p", "0.25", "--pairs", "1", "--view-size", "16", "--method", "byol", "--mix-views", "second",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert (doc["p"], doc["pairs"], doc["mix_views"]) == (0.25, 1, "second")
    assert doc["views_from"] == "trainers/byol at 16 px"
    import yaml

    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text(yaml.safe_dump({"method": "simclr", "views": {"preset": "simclr", "size": 16}}))
    assert main([*argv, "--run", str(run)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["views_from"] == str(run / "recipe.yaml")
