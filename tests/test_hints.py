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
