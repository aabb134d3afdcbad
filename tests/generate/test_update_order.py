"""`generate --update` (remake only what a change of k adds) and `generate --order` (which shards come first)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genaug.cli import main as cli_main
from genaug.core.errors import GenaugError
from genaug.data.stream import build_train_loader
from genaug.generate.dispatch import generate
from genaug.generate.order import shard_priority
from genaug.shards.layout import ShardSet, parse_key
from genaug.shards.manifest import open_gen_split, read_manifest
from genaug.shards.writer import read_stats
from genaug.testing.runs import train_tiny
from genaug.testing.shards import write_synthetic_split

SHARDS, PER = 3, 2


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A source split of 3 shards x 2 images, a k = 4 reference column and a k = 2 column to update."""
    root = tmp_path_factory.mktemp("upd") / "set"
    write_synthetic_split(root, "train", num_shards=SHARDS, per_shard=PER, size=32, seed=5)
    generate(model="tiny", shards=str(root), column="fresh4", k=4, batch_size=1, progress=False)
    return root


def tars(root: Path, column: str) -> list[bytes]:
    return [(root / "gen" / column / "train" / f"{i:06d}.tar").read_bytes() for i in range(SHARDS)]


def env(**extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **extra}


def test_update_k_makes_only_the_new_variants_and_equals_a_fresh_column(root):
    generate(model="tiny", shards=str(root), column="up", k=2, batch_size=1, progress=False)
    out = generate(model="tiny", shards=str(root), column="up", k=4, batch_size=1, update=True, progress=False)
    assert out["images"] == SHARDS * PER * 2  # the model sampled only variants 2 and 3 of each image
    assert tars(root, "up") == tars(root, "fresh4")  # byte for byte, fidelity scores included (same batches)
    man, fresh = read_manifest(root / "gen/up/train"), read_manifest(root / "gen/fresh4/train")
    assert man["k"] == 4 and man["recipe_hash"] == fresh["recipe_hash"] and "update" not in man
    assert man["updated_from"][0]["k"] == 2
    assert cli_main(["verify", "--shards", str(root)]) == 0
    # k down: nothing is sampled, the kept variants are the first two
    down = generate(model="tiny", shards=str(root), column="up", k=2, batch_size=1, update=True, progress=False)
    assert down["images"] == 0 and read_manifest(root / "gen/up/train")["k"] == 2


def test_update_killed_mid_commit_resumes_to_the_same_column_and_readers_wait(root, capsys):
    generate(model="tiny", shards=str(root), column="upk", k=2, batch_size=1, progress=False)
    folder = root / "gen/upk/train"
    cmd = [sys.executable, "-m", "genaug", "generate", "--shards", str(root), "--column", "upk", "--k", "4",
           "--batch-size", "1", "--update", "--no-progress"]  # fmt: skip
    # killed between shard 1's new tar and its stats: a tar the old stats do not describe
    res = subprocess.run(cmd, env=env(GENAUG_FAULT="tar-renamed:1"), capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert read_manifest(folder)["update"]["k"] == 4
    with pytest.raises(GenaugError, match="being updated") as e:  # the trainer, eval and inspect open it this way
        open_gen_split(ShardSet.open(str(root)), "upk", "train", str(root))
    hints = re.findall(r"`(genaug [^`]+)`", str(e.value))
    assert hints == [f"genaug generate --shards {root} --column upk --split train --status"], str(e.value)
    capsys.readouterr()
    assert cli_main(shlex.split(hints[0])[1:]) == 0  # the hint runs: it reports the update's progress
    out = capsys.readouterr().out
    assert "k=4" in out and "updating from k=2" in out and f"1/{SHARDS} done" in out, out  # shard 0 was remade
    assert cli_main(["verify", "--shards", str(root)]) == 1  # problems found
    out = generate(model="tiny", shards=str(root), column="upk", k=4, batch_size=1, update=True, progress=False)
    assert out["images"] == PER * 2 + PER * 4  # shard 2 as planned; shard 1's old variants were lost: made again
    assert tars(root, "upk") == tars(root, "fresh4")
    assert all(read_stats(folder, i)["recipe_hash"] == read_manifest(folder)["recipe_hash"] for i in range(SHARDS))


def test_update_refuses_a_change_that_touches_every_variant(root, capsys):
    generate(model="tiny", shards=str(root), column="upm", k=2, batch_size=1, progress=False)
    before = tars(root, "upm")
    rc = cli_main(["generate", "--shards", str(root), "--column", "upm", "--k", "4", "--steps", "3", "--update",
                   "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "sampling.steps" in err[0] and "--column NEWNAME" in err[0], err
    assert tars(root, "upm") == before and "update" not in read_manifest(root / "gen/upm/train")
    rc = cli_main(["generate", "--shards", str(root), "--column", "nosuch", "--update", "--no-progress"])
    assert rc == 2 and "no generated column 'nosuch'" in capsys.readouterr().err
    rc = cli_main(["generate", "--shards", str(root), "--column", "upm", "--k", "3", "--no-progress"])
    assert rc == 2 and "--update" in capsys.readouterr().err  # the refusal names the way out


def test_order_file_sets_which_shards_are_made_first(root, tmp_path):
    order = tmp_path / "order.txt"
    order.write_text("000002.tar\n# a comment\n0\n")
    out = generate(model="tiny", shards=str(root), column="ord", k=1, order=order, progress=False)
    assert out["shards"] == [2, 0, 1]  # listed first, in the list's order; the rest after
    bad = tmp_path / "bad.txt"
    bad.write_text("000009.tar\n")
    with pytest.raises(GenaugError, match="not in the split"):
        shard_priority(bad, [0, 1, 2])
    with pytest.raises(GenaugError, match="no such file"):
        shard_priority(tmp_path / "missing", [0, 1, 2])


def test_order_from_a_run_folder_is_the_order_its_trainer_reads(tmp_path):
    root = write_synthetic_split(tmp_path / "set", "train", num_shards=4, per_shard=4, size=16, seed=2).parent
    run = train_tiny("simclr", root, tmp_path / "run", steps=1, seed=11)
    got = shard_priority(run, list(range(4)))
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    loader = build_train_loader(root, batch_size=1, num_workers=0, seed=recipe["run"]["seed"], shuffle_buffer=1,
                                views_recipe=recipe.get("views"))  # fmt: skip
    read = []
    for b in loader:
        for key in b["key"]:
            shard = parse_key(key)[0]
            if shard not in read:
                read.append(shard)
    assert got == read and sorted(got) == list(range(4)) and got != sorted(got)
