"""Names that become paths (--split, --column, a recipe's name) are one safe path component, or a one-line error."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from genaug.cli import main
from genaug.core.errors import GenaugError
from genaug.generate.recipe import resolve_recipe
from genaug.shards.layout import ShardSet, check_name

BAD = ["", ".", "..", "a/b", "../x", "a\\b", "/abs", "a\x00b", "a\nb", " train", "x" * 256]


@pytest.mark.parametrize("value", BAD)
def test_check_name_rejects_anything_but_one_component(value):
    with pytest.raises(GenaugError) as e:
        check_name(value, "--split")
    assert str(e.value).startswith(f"--split {value!r} is not a valid name") and "\n" not in str(e.value)


@pytest.mark.parametrize("value", ["train", "val", "sd-unclip", "tiny_v2", "run.1", "ünïcode"])
def test_check_name_accepts_plain_names(value):
    assert check_name(value, "--split") == value


def test_shard_set_paths_are_checked(tmp_path):
    ss = ShardSet(tmp_path)
    assert ss.split_dir("val") == tmp_path / "val"
    assert ss.gen_dir("tiny", "val") == tmp_path / "gen" / "tiny" / "val"
    with pytest.raises(GenaugError, match="--split"):
        ss.split_dir("..")
    with pytest.raises(GenaugError, match="--column"):
        ss.gen_dir("../..", "train")
    with pytest.raises(GenaugError, match="--split"):
        ss.gen_dir("tiny", ".")


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(src / "a.jpg")
    return src


@pytest.mark.parametrize("split", ["..", ".", "a/b", "", "gen"])
def test_ingest_refuses_path_like_splits(tmp_path, source, capsys, split):
    sset = tmp_path / "sets" / "one"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(["ingest", str(source), "--shards", str(sset), "--split", split, "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("genaug: error: --split") and err.count("\n") == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_generate_refuses_path_like_column_and_split(tmp_path, capsys):
    from genaug.testing.shards import write_synthetic_split

    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=1, per_shard=2, size=16, seed=0)
    before = sorted(tmp_path.rglob("*"))
    for args in (["--column", ".."], ["--column", "a/b"], ["--column", "."], ["--split", ".."], ["--split", "."]):
        code = main(["generate", "--shards", str(root), "--no-progress", *args])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("genaug: error: --") and err.count("\n") == 1, (args, err)
    assert sorted(tmp_path.rglob("*")) == before  # no column folder made anywhere


def test_recipe_name_used_as_column_folder_is_checked(tmp_path):
    doc = {"name": "../../outside", "generator": "sd-variation", "k": 1, "seed": 0}
    path = tmp_path / "evil.yaml"
    path.write_text(json.dumps(doc))
    with pytest.raises(GenaugError, match="`name:`"):
        resolve_recipe(str(path))
