"""The CLI: every stage command has help; user errors are one line, exit 2, no traceback; verify exits 1."""

import json
import subprocess
import sys

import pytest

from genaug.shards.writer import commit_shard
from genaug.testing.shards import write_synthetic_split


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "genaug", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_every_stage():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ["ingest", "generate", "train", "eval", "inspect", "verify", "demo"]:
        assert cmd in r.stdout
    for cmd in ["ingest", "verify", "demo"]:
        h = run(cmd, "--help")
        assert h.returncode == 0 and "Example" in h.stdout or cmd == "demo"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["ingest", "/no/such/folder", "--shards", "x"], "/no/such/folder"),
        (["verify", "--shards", "/no/such/set"], "/no/such/set"),
        (["ingest", ".", "--shards", "x", "--quality", "0"], "--quality"),
        (["ingest", "--shards", "x"], "source"),
        (["verify", "--bogus"], "--bogus"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, args, needle):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genaug: error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_verify_reports_problems_one_per_line(tmp_path):
    folder = write_synthetic_split(tmp_path / "set", num_shards=3, per_shard=3, size=8)
    ok = run("verify", "--shards", str(tmp_path / "set"))
    assert ok.returncode == 0 and ok.stdout == ""
    tar = folder / "000001.tar"
    data = bytearray(tar.read_bytes())
    data[700] ^= 1
    tar.write_bytes(bytes(data))
    (folder / "000002.json").unlink()
    # a generated column whose keys are not those of the source shard
    gen = tmp_path / "set" / "gen" / "tiny" / "train"
    gen.mkdir(parents=True)
    from genaug.shards.manifest import write_manifest

    write_manifest(gen, {"kind": "generated", "k": 1, "shards": ["000000.tar", "000001.tar", "000002.tar"]})
    meta = json.dumps({"seeds": [1], "failed": None})
    commit_shard(gen, 0, [{"__key__": f"s000000r00000{r}", "gen_0.jpg": b"x", "json": meta} for r in (2, 1, 0)])
    bad = run("verify", "--shards", str(tmp_path / "set"))
    assert bad.returncode == 1
    out = bad.stdout.strip().splitlines()
    assert any("000001.tar" in x and "sha256" in x for x in out)
    assert any("000002.tar" in x and "stats" in x for x in out)
    assert any("gen/tiny/train/000000.tar" in x and "same order" in x for x in out)


def test_a_bug_keeps_its_own_traceback():
    """An unexpected exception inside a command reaches the user as itself (not as an error of the CLI's handler)."""
    from genaug import cli

    @cli.app.command("boom-for-test")
    def boom() -> None:
        raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError, match="boom"):
            cli.main(["boom-for-test"])
    finally:
        cli.app.registered_commands.pop()


def test_usage_errors_and_exit_codes_with_the_installed_typer():
    """A bad flag is one line and status 2; --help exits 0 through typer's Exit of this typer/click version."""
    from genaug import cli

    assert cli.main(["train", "--no-such-flag"]) == 2
    assert cli.main(["train", "--help"]) == 0


def test_disk_full_is_one_line(capsys):
    """A full disk ends with one line naming the file and the fix, not a chained traceback."""
    import errno

    from genaug import cli

    @cli.app.command("full-for-test")
    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/shards/x/000001.tar.tmp")

    try:
        assert cli.main(["full-for-test"]) == 2
    finally:
        cli.app.registered_commands.pop()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left" in err and "000001.tar.tmp" in err and "rerun" in err
