"""Every hint a failing command prints is a command that runs as printed: the `genaug ...` between backticks is run
through the CLI and must not be refused as a usage error; a `genaug verify` hint then names the damaged shard."""

import re
import shlex

from genaug.cli import main
from genaug.testing.shards import write_synthetic_split


def _hints(err: str) -> list[str]:
    return re.findall(r"`(genaug [^`]+)`", err)


def test_a_damaged_set_hints_at_a_verify_command_that_finds_the_damage(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "my set"  # a space: the hint must quote the path
    write_synthetic_split(root, "train", num_shards=2, per_shard=8, size=16, num_classes=2, seed=0)
    (root / "train" / "000001.tar").unlink()
    argv = ["train", "--method", "simclr", "--shards", str(root), "--backbone", "tiny", "--image-size", "16"]
    assert main([*argv, "--batch-size", "4", "--workers", "0", "--steps", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    hints = _hints(err)
    assert hints == [f"genaug verify --shards {shlex.quote(str(root))}"], err
    rc = main(shlex.split(hints[0])[1:])
    out = capsys.readouterr()
    assert rc == 1 and "(see --help)" not in out.err  # ran, and found the problem
    assert "000001.tar" in out.out + out.err


def test_a_missing_column_hints_at_a_generate_command_that_makes_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=1, per_shard=2, size=16, num_classes=2, seed=0)
    argv = ["inspect", "--shards", str(root), "--gen", "tiny", "--out", str(tmp_path / "c.png")]
    assert main(argv) == 2
    hints = _hints(capsys.readouterr().err)
    assert hints == [f"genaug generate --model tiny --shards {root} --split train"], hints
    assert main(shlex.split(hints[0])[1:]) == 0
    capsys.readouterr()
    assert main(argv) == 0  # the column the hint made is the one the command wanted


def test_a_changed_shard_hints_at_a_verify_command_that_finds_it(tmp_path, capsys, monkeypatch):
    """A val shard whose bytes changed after commit: eval refuses it and its hint is a verify command that runs."""
    from genaug.testing.runs import train_tiny

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=1, per_shard=8, size=16, num_classes=2, seed=0)
    write_synthetic_split(root, "val", num_shards=1, per_shard=4, size=16, num_classes=2, seed=1)
    run = train_tiny("simclr", root, tmp_path / "run", steps=2)
    with open(root / "val" / "000000.tar", "ab") as f:
        f.write(b"\0" * 512)  # still a readable tar, no longer the bytes its stats recorded
    capsys.readouterr()
    assert main(["eval", "knn", str(run), "--shards", str(root), "--k", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    hints = _hints(err)
    assert hints == [f"genaug verify --shards {root}"], err
    rc = main(shlex.split(hints[0])[1:])
    out = capsys.readouterr()
    assert rc == 1 and "(see --help)" not in out.err and "000000.tar" in out.out + out.err


def _ingest_sorted(tmp_path, monkeypatch) -> tuple[list[str], str]:
    """A class-folder tree ingested through the CLI from a relative path, 4 shards of 6; (its argv, the set)."""
    from genaug.testing.shards import write_image_tree

    monkeypatch.chdir(tmp_path)
    write_image_tree(tmp_path / "tree", classes=2, per_class=12)
    argv = ["ingest", "tree", "--shards", "set", "--per-shard", "6", "--order", "sorted", "--workers", "0", "--quiet"]
    assert main(argv) == 0
    return argv, "shards/set"


def test_a_damaged_source_manifest_hints_at_the_ingest_that_repairs_it(tmp_path, capsys, monkeypatch):
    """An edited manifest: generate refuses it, naming the ingest command (recorded at ingest, absolute source) that
    rewrites it; that command, run as printed, repairs the split without rewriting a shard."""
    import json

    _ingest_sorted(tmp_path, monkeypatch)
    split = tmp_path / "shards" / "set" / "train"
    good = (split / "manifest.json").read_text()
    tars = {p.name: p.stat().st_mtime_ns for p in split.glob("*.tar")}
    doc = json.loads(good)
    doc["num_shards"] = 7
    (split / "manifest.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["generate", "--shards", "set", "--model", "tiny", "--no-progress"]) == 2
    hints = _hints(capsys.readouterr().err)
    tree = shlex.quote(str(tmp_path / "tree"))
    assert hints == [f"genaug ingest {tree} --shards shards/set --split train --per-shard 6 --order sorted"], hints
    assert main(shlex.split(hints[0])[1:]) == 0
    assert json.loads((split / "manifest.json").read_text())["num_shards"] == 4
    assert {p.name: p.stat().st_mtime_ns for p in split.glob("*.tar")} == tars  # repaired, nothing rewritten
    assert main(["verify", "--shards", "set"]) == 0


def test_an_unfinished_source_shard_hints_at_the_ingest_that_finishes_it(tmp_path, capsys, monkeypatch):
    """A source shard lost after ingest: train refuses the split with the ingest command that remakes that shard,
    byte for byte, and then trains."""
    import hashlib

    _ingest_sorted(tmp_path, monkeypatch)
    split = tmp_path / "shards" / "set" / "train"
    before = hashlib.sha256((split / "000002.tar").read_bytes()).hexdigest()
    for name in ("000002.tar", "000002.json", "complete.json"):
        (split / name).unlink()
    train = ["train", "--method", "simclr", "--shards", "set", "--backbone", "tiny", "--image-size", "16"]
    train += ["--batch-size", "4", "--workers", "0", "--steps", "1", "--out", str(tmp_path / "run")]
    capsys.readouterr()
    assert main(train) == 2
    hints = _hints(capsys.readouterr().err)
    assert len(hints) == 1 and hints[0].startswith("genaug ingest ") and "--per-shard 6" in hints[0], hints
    assert main(shlex.split(hints[0])[1:]) == 0
    assert hashlib.sha256((split / "000002.tar").read_bytes()).hexdigest() == before
    assert main(train) == 0


def test_an_ingest_resumes_however_its_source_path_is_spelled(tmp_path, capsys, monkeypatch):
    """The plan does not depend on how SOURCE is written: `tree`, `./tree` and its absolute path are one plan."""
    argv, _ = _ingest_sorted(tmp_path, monkeypatch)
    for spelled in ("./tree", str(tmp_path / "tree"), "tree/"):
        capsys.readouterr()
        assert main([argv[0], spelled, *argv[2:]]) == 0, capsys.readouterr().err
        assert "0 written now, 4 already done" in capsys.readouterr().out


def test_an_unfinished_column_hints_at_a_status_command(tmp_path, capsys, monkeypatch):
    """Train and score on a column with shards still to make: the hint is a `generate --status` that runs and counts
    what is left."""
    _ingest_sorted(tmp_path, monkeypatch)
    assert main(["generate", "--shards", "set", "--model", "tiny", "--limit-shards", "1", "--no-progress"]) == 0
    train = ["train", "--method", "simclr", "--shards", "set", "--gen", "tiny", "--backbone", "tiny"]
    train += ["--image-size", "16", "--batch-size", "4", "--workers", "0", "--steps", "1", "--out", "run"]
    status = "genaug generate --shards shards/set --column tiny --split train --status"
    for argv in (train, ["score", "--shards", "set", "--gen", "tiny", "--no-progress"]):
        capsys.readouterr()
        assert main(argv) == 2
        hints = _hints(capsys.readouterr().err)
        assert hints == [status], hints
        assert main(shlex.split(hints[0])[1:]) == 0
        out = capsys.readouterr().out
        assert "1/4 done" in out and "3 pending" in out, out


def test_a_manifest_cannot_make_the_hint_suggest_another_flag(tmp_path, capsys, monkeypatch):
    """`ingest_flags` is read from a file anyone may edit: a flag ingest never records (--overwrite) drops the ingest
    command from the hint, which falls back to a verify command."""
    import json

    _ingest_sorted(tmp_path, monkeypatch)
    split = tmp_path / "shards" / "set" / "train"
    doc = json.loads((split / "manifest.json").read_text())
    doc["ingest_flags"] = [*doc["ingest_flags"], "--overwrite"]
    (split / "manifest.json").write_text(json.dumps(doc))
    for name in ("000001.tar", "000001.json", "complete.json"):
        (split / name).unlink()
    capsys.readouterr()
    assert main(["generate", "--shards", "set", "--model", "tiny", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert _hints(err) == ["genaug verify --shards shards/set"] and "--overwrite" not in err, err


def test_a_split_planned_before_paths_were_resolved_resumes_on_every_rerun(tmp_path, capsys, monkeypatch):
    """A split an older genaug planned from `tree` as spelled (made here by keeping the spelling, then dropping the
    keys it did not write) resumes from `tree` again and again: a rerun must not switch it to the resolved path."""
    import json

    import genaug.ingest.run as run
    from genaug.testing.shards import write_image_tree

    monkeypatch.chdir(tmp_path)
    write_image_tree(tmp_path / "tree", classes=2, per_class=12)
    argv = ["ingest", "tree", "--shards", "set", "--per-shard", "6", "--order", "sorted", "--workers", "0", "--quiet"]
    with monkeypatch.context() as m:  # the older genaug: SOURCE as spelled
        m.setattr(run, "planned_source", lambda source, old: (str(source), False))
        assert main(argv) == 0
    split = tmp_path / "shards" / "set" / "train"
    doc = json.loads((split / "manifest.json").read_text())
    for key in ("ingest_flags", "source_resolved"):
        doc.pop(key)
    (split / "manifest.json").write_text(json.dumps(doc))
    for lost in ("000001", "000002"):  # two crashes, two reruns
        for name in (f"{lost}.tar", f"{lost}.json", "complete.json"):
            (split / name).unlink(missing_ok=True)
        capsys.readouterr()
        assert main(argv) == 0, capsys.readouterr().err
        assert "(1 written now, 3 already done)" in capsys.readouterr().out
    assert main(["verify", "--shards", "set"]) == 0
