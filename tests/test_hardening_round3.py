"""Hardening round 3 (issue 25), as a user hits each case from the command line: a foreign column (0), damaged or
swapped shards in eval and inspect (3), hostile shard names (4), malformed JSON (5); every case ends in one
`genaug: error:` line with exit 2 (or a problem line of `verify`, exit 1), never a traceback or a wrong number."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from genaug.cli import main
from genaug.generate.column import column_hash
from genaug.shards.manifest import read_manifest, write_manifest
from genaug.shards.reader import iter_shard_raw
from genaug.shards.writer import commit_shard
from genaug.testing.shards import write_synthetic_split

TRAIN = ["--method", "simclr", "--backbone", "tiny", "--image-size", "16", "--batch-size", "4", "--workers", "0",
         "--steps", "1", "--quiet", "--no-probe"]  # fmt: skip


def one_line_error(argv: list[str], capsys, code: int = 2) -> str:
    """Run `genaug argv` in-process; assert exit `code`, one `genaug: error:` line and no traceback; return it."""
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    err = "\n".join(ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "%|" not in ln)  # bars
    assert err.startswith("genaug: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def verify_problems(shards: Path, capsys) -> str:
    """`genaug verify` output of a set with problems: exit 1, no traceback."""
    capsys.readouterr()
    assert main(["verify", "--shards", str(shards)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return out.out + out.err


def _jpeg(colour, size: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_column(root: Path, split: str, name: str, scores=(0.5, 0.7)) -> Path:
    """Generated column `name` of root/split as `generate` writes it (source_plan_hash, inline fidelity scores)."""
    src, dst = root / split, root / "gen" / name / split
    man = read_manifest(src)
    dst.mkdir(parents=True, exist_ok=True)
    write_manifest(dst, {"kind": "generated", "column": name, "recipe": {"name": name, "k": len(scores)},
                         "recipe_hash": column_hash({"name": name, "k": len(scores)}),
                         "k": len(scores), "source_split": split, "source_plan_hash": man["plan_hash"],
                         "shards": man["shards"], "num_shards": len(man["shards"]),
                         "fidelity": {"space": "test", "encoder": "test"}})  # fmt: skip
    for sname in man["shards"]:
        samples = []
        for raw in iter_shard_raw(src / sname):
            doc = {"space": "test", "scores": list(scores), "diversity": 0.1, "blank": [], "near_copy": []}
            s = {"__key__": raw["__key__"], "json": json.dumps({"failed": None, "fidelity": doc})}
            s.update({f"gen_{j}.jpg": _jpeg((250, 5, 5 + 100 * j)) for j in range(len(scores))})
            samples.append(s)
        commit_shard(dst, int(sname[:6]), samples)
    return dst


def make_set(root: Path, seed: int) -> Path:
    write_synthetic_split(root, "train", num_shards=2, per_shard=6, size=24, num_classes=2, seed=seed)
    write_synthetic_split(root, "val", num_shards=2, per_shard=6, size=24, num_classes=2, seed=seed + 1)
    write_column(root, "train", "g")
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A clean set (train, val, column g); tests work on copies of it."""
    return make_set(tmp_path_factory.mktemp("r3") / "set", seed=0)


@pytest.fixture
def copy(base, tmp_path) -> Path:
    dst = tmp_path / "set"
    shutil.copytree(base, dst)
    return dst


# -- case 0: a column generated from another image set ----------------------------------------------------------
def test_a_column_made_from_another_image_set_is_refused_everywhere(copy, tmp_path, capsys):
    other = make_set(tmp_path / "other", seed=7)  # same shard counts and keys, other images
    shutil.rmtree(copy / "gen" / "g")
    shutil.copytree(other / "gen" / "g", copy / "gen" / "g")
    out = verify_problems(copy, capsys)
    assert "made from another image set" in out and str(copy / "gen" / "g" / "train") in out
    gen = ["--shards", str(copy), "--gen", "g"]
    err = one_line_error(["train", *TRAIN, *gen, "--p", "1", "--out", str(tmp_path / "run")], capsys)
    assert "made from another image set" in err and "source_plan_hash" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert "made from another image set" in one_line_error(["inspect", *gen, "--out", str(tmp_path / "c.png")], capsys)
    assert "made from another image set" in one_line_error(["score", *gen], capsys)
    # the column made from this set is still accepted
    shutil.rmtree(copy / "gen" / "g")
    write_column(copy, "train", "g")
    capsys.readouterr()
    assert main(["verify", "--shards", str(copy)]) == 0


# -- case 4: shard names in a manifest ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../etc/passwd", "000000/../../../outside.tar", "000001.tar/../000000.tar"])
def test_a_manifest_naming_a_path_is_refused(copy, tmp_path, capsys, name):
    outside = copy.parent / "outside.tar"
    shutil.copy(copy / "train" / "000001.tar", outside)
    man = read_manifest(copy / "train")
    write_manifest(copy / "train", {**man, "shards": ["000000.tar", name]})
    out = verify_problems(copy, capsys)
    assert "not a shard name NNNNNN.tar" in out and name in out
    err = one_line_error(["train", *TRAIN, "--shards", str(copy), "--out", str(tmp_path / "run")], capsys)
    assert "not a shard name NNNNNN.tar" in err and "manifest.json" in err
    err = one_line_error(["inspect", "--shards", str(copy), "--gen", "g", "--out", str(tmp_path / "c.png")], capsys)
    assert "not a shard name" in err


def test_a_manifest_whose_shard_list_disagrees_with_its_counts_is_refused(copy, tmp_path, capsys):
    man = read_manifest(copy / "train")
    write_manifest(copy / "train", {**man, "shards": [f"{i:06d}.tar" for i in range(100_000)]})
    err = one_line_error(["train", *TRAIN, "--shards", str(copy), "--out", str(tmp_path / "run")], capsys)
    assert "lists 100000 shards" in err
    write_manifest(copy / "train", {**man, "shards": ["000000.tar", "000000.tar"], "num_shards": 2})
    assert "twice" in one_line_error(["train", *TRAIN, "--shards", str(copy), "--out", str(tmp_path / "r2")], capsys)


# -- case 5: malformed JSON --------------------------------------------------------------------------------------
def test_deeply_nested_json_in_a_manifest_or_stats_is_one_line(copy, tmp_path, capsys):
    deep = "[" * 200_000 + "]" * 200_000
    manifest = copy / "val" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"kind": "source"', f'"kind": "source", "x": {deep}'))
    out = verify_problems(copy, capsys)
    assert "nested deeper than the parser allows" in out and str(manifest) in out
    argv = ["train", *TRAIN, "--shards", str(copy), "--split", "val", "--out", str(tmp_path / "r")]
    err = one_line_error(argv, capsys)
    assert "nested deeper than the parser allows" in err and str(manifest) in err
    stats = copy / "train" / "000001.json"
    stats.write_text(stats.read_text().replace('"count": 6', f'"count": 6, "x": {deep}'))
    out = verify_problems(copy, capsys)
    assert "000001.tar: no valid stats file" in out
    err = one_line_error(["train", *TRAIN, "--shards", str(copy), "--out", str(tmp_path / "r2")], capsys)
    assert "000001.tar is not complete" in err


@pytest.mark.parametrize("value", ["NaN", "Infinity", '"6"', "6.5", "-1", "true"])
def test_a_stats_count_that_is_not_a_whole_number_is_one_line(copy, tmp_path, capsys, value):
    stats = copy / "train" / "000000.json"
    stats.write_text(stats.read_text().replace('"count": 6', f'"count": {value}'))
    err = one_line_error(["train", *TRAIN, "--shards", str(copy), "--out", str(tmp_path / "run")], capsys)
    assert "000000.tar is not complete" in err
    assert "000000.tar: no valid stats file" in verify_problems(copy, capsys)


# -- case 3: eval and inspect check shard checksums --------------------------------------------------------------
@pytest.fixture(scope="module")
def run(base, tmp_path_factory) -> Path:
    from genaug.testing.runs import train_tiny

    return train_tiny("simclr", base, tmp_path_factory.mktemp("r3run") / "run", steps=2)


def test_eval_and_inspect_refuse_a_shard_swapped_for_another(copy, run, tmp_path, capsys):
    for split in ("val", "train"):
        shutil.copy(copy / split / "000000.tar", copy / split / "000001.tar")  # six images twice, stats of 000001
    err = one_line_error(["eval", "knn", str(run), "--shards", str(copy), "--out", str(tmp_path / "knn.json")], capsys)
    assert "does not match the sha256" in err and "000001.tar" in err
    assert not (tmp_path / "knn.json").exists()
    argv = ["inspect", "--shards", str(copy), "--gen", "g", "--n", "12", "--out", str(tmp_path / "c.png")]
    err = one_line_error(argv, capsys)
    assert "does not match the sha256" in err and "000001.tar" in err


# -- case 2: fidelity scores that are not numbers in [-1, 1] -----------------------------------------------------
BAD_SCORES = {"text": "0.9", "list": [0.9], "mapping": {"a": 0.9}, "above": 1.5, "below": -3}


@pytest.mark.parametrize("kind", sorted(BAD_SCORES))
def test_a_bad_fidelity_score_is_a_verify_problem_and_an_unscored_variant_in_train(copy, tmp_path, capsys, kind):
    shutil.rmtree(copy / "gen" / "g")
    write_column(copy, "train", "g", scores=(BAD_SCORES[kind], 0.1))
    out = verify_problems(copy, capsys)
    assert "not a number in [-1, 1]" in out and "s000000r000000" in out
    runs = []
    for flags in (["--gen-min-score", "0.5"], ["--gen-weighting", "score"]):
        out_dir = tmp_path / f"run{len(runs)}"
        argv = ["train", *TRAIN, "--shards", str(copy), "--gen", "g", "--p", "1", "--out", str(out_dir), *flags]
        capsys.readouterr()
        with pytest.warns(UserWarning, match="not a number in"):
            assert main(argv) == 0
        assert "Traceback" not in capsys.readouterr().err
        runs.append([json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines()])
    # under --gen-min-score 0.5 no variant is usable (0.1 fails, the bad one counts as unscored): all filtered
    assert runs[0][-1]["gen_filtered_rate"] == 1.0 and runs[0][-1]["replaced"] == 0.0
    capsys.readouterr()
    with pytest.warns(UserWarning, match="not a number in"):
        assert main(["inspect", "--shards", str(copy), "--gen", "g", "--sort", "score", "--out",
                     str(tmp_path / "c.png")]) == 0  # fmt: skip


def test_an_infinite_or_nan_score_never_passes_a_filter(copy, tmp_path, capsys):
    for value in (float("inf"), float("nan")):
        shutil.rmtree(copy / "gen" / "g")
        write_column(copy, "train", "g", scores=(value, 0.1))  # json.dumps writes Infinity / NaN: not JSON
        assert "lacks json (valid)" in verify_problems(copy, capsys)
        out_dir = tmp_path / f"run-{value}"
        argv = ["train", *TRAIN, "--shards", str(copy), "--gen", "g", "--p", "1", "--out", str(out_dir),
                "--gen-min-score", "0.5"]  # fmt: skip
        assert main(argv) == 0
        row = json.loads((out_dir / "metrics.jsonl").read_text().splitlines()[-1])
        assert row["gen_filtered_rate"] == 1.0 and row["replaced"] == 0.0


# -- case 9: the logged loss after a resume ----------------------------------------------------------------------
def test_logged_loss_after_a_resume_equals_the_uninterrupted_run(base, tmp_path, capsys):
    args = ["train", *TRAIN[:-4], "--quiet", "--no-probe", "--shards", str(base), "--steps", "4", "--log-every", "4",
            "--ckpt-every", "2", "--seed", "3"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--stop-after", "2"]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0

    def rows(d):
        return [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]

    a, b = rows("a"), rows("b")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [4]
    assert b[0]["loss"] == pytest.approx(a[0]["loss"], rel=1e-5, abs=1e-6)


# -- case 6: a lease with a heartbeat time in the future -------------------------------------------------------
def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_lease_from_the_future_is_stale_and_taken_over(copy, capsys):
    import os
    import socket
    import time

    from genaug.generate.leases import lease_path, try_acquire

    col = copy / "gen" / "g" / "train"
    (col / "000001.json").unlink()  # shard 1 not done: its lease decides who makes it
    lease = lease_path(col, 1)
    lease.parent.mkdir()
    lease.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": "planted"}))  # alive
    os.utime(lease, (time.time() + 10**7, time.time() + 10**7))
    capsys.readouterr()
    with pytest.warns(UserWarning, match="in the future"):
        assert main(["generate", "--shards", str(copy), "--column", "g", "--status", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["stale"] == [1] and st["in_progress"] == []
    with pytest.warns(UserWarning, match="in the future"):
        got = try_acquire(col, 1, timeout=300)
    assert got is not None and json.loads(lease.read_text())["token"] != "planted"
    got.release()
    # a small skew between hosts is not stale
    lease.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "peer"}))
    os.utime(lease, (time.time() + 5, time.time() + 5))
    assert try_acquire(col, 1, timeout=300) is None


# -- case 1: a lease object created after the listing cache was filled -------------------------------------------
def test_a_dead_peers_lease_object_is_read_fresh_and_taken_over(s3):
    import socket

    import boto3

    from genaug.generate.leases import LEASE_DIR
    from genaug.generate.leases.objects import object_lease_state, try_acquire_object
    from genaug.shards.storage import as_location

    col = as_location(f"s3://{s3}/set/gen/g/train")
    (col / LEASE_DIR / "000009.lease").write_bytes(b"{}")  # another shard's lease: the folder exists
    list((col / LEASE_DIR).iterdir())  # this process lists .leases/ (as a run does when it starts)
    doc = {"host": socket.gethostname(), "pid": _dead_pid(), "token": "dead-peer"}
    boto3.client("s3", region_name="us-east-1").put_object(  # a peer on this host claims shard 0, then dies
        Bucket=s3, Key="set/gen/g/train/.leases/000000.lease", Body=json.dumps(doc).encode()
    )
    assert object_lease_state(col, 0, timeout=300)[0] == "stale"  # --status: its owner is dead on this host
    got = try_acquire_object(col, 0, timeout=300)  # at once, not after --lease-timeout
    assert got is not None and got.owned()
    got.release()


# -- case 7: recipes a user was handed ---------------------------------------------------------------------------
def _laughs(levels: int = 9) -> str:
    lines = ["name: bomb", "generator: sd-variation", "k: 2", 'lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text, expect",
    [
        (_laughs(), "expands to more than"),
        ("name: x\nk: 2\nnote: caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
        ("name: x\nk: 2\ndeep: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
    ],
    ids=["billion-laughs", "latin-1", "deep-list"],
)
def test_a_hostile_generation_recipe_is_one_line(copy, tmp_path, capsys, text, expect):
    recipe = tmp_path / "handed.yaml"
    recipe.write_bytes(text if isinstance(text, bytes) else text.encode())
    err = one_line_error(["generate", "--shards", str(copy), "--model", str(recipe), "--column", "h"], capsys)
    assert expect in err and str(recipe) in err


def test_a_folder_given_as_a_recipe_is_named_a_folder(copy, tmp_path, capsys):
    (tmp_path / "mine.yaml").mkdir()
    err = one_line_error(["generate", "--shards", str(copy), "--model", str(tmp_path / "mine.yaml")], capsys)
    assert "is a folder, not a file" in err


def test_a_views_preset_that_is_not_a_name_is_one_line(copy, tmp_path, capsys):
    import yaml

    from genaug.core.recipes import recipe_path

    doc = yaml.safe_load(recipe_path("trainers", "simclr").read_text())
    doc["views"] = {"preset": [1, 2]}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(doc))
    argv = ["train", *TRAIN[2:], "--method", str(tmp_path / "mine.yaml"), "--shards", str(copy), "--out", "r"]
    assert "unknown preset [1, 2]" in one_line_error(argv, capsys)


def test_a_recipe_cache_folder_is_never_created(copy, tmp_path, capsys):
    import yaml

    from genaug.core.recipes import recipe_path

    doc = yaml.safe_load(recipe_path("pipelines", "tiny").read_text())
    doc["runtime"]["cache"] = str(tmp_path / "elsewhere" / "deeper")
    (tmp_path / "tiny2.yaml").write_text(yaml.safe_dump(doc))
    err = one_line_error(["generate", "--shards", str(copy), "--model", str(tmp_path / "tiny2.yaml"), "--column", "t2",
                          "--no-progress", "--device", "cpu"], capsys)  # fmt: skip
    assert "runtime.cache" in err and "not an existing folder" in err
    assert not (tmp_path / "elsewhere").exists()


# -- case 8: flags -------------------------------------------------------------------------------------------------
def test_an_unreachable_ray_address_is_one_line_at_once(copy):
    """A subprocess with a hang guard: without the probe, Ray retries the address for minutes inside its own C++
    code, where no signal reaches Python; the probe answers within 5 s."""
    import subprocess
    import sys

    pytest.importorskip("ray")
    from genaug.testing.servers import free_port

    argv = ["generate", "--shards", str(copy), "--model", "tiny", "--column", "rayc", "--engine", "ray",
            "--ray-address", f"127.0.0.1:{free_port()}", "--no-progress"]  # fmt: skip
    res = subprocess.run([sys.executable, "-m", "genaug", *argv], capture_output=True, text=True, timeout=120)
    err = "\n".join(ln for ln in res.stderr.splitlines() if ln.strip())
    assert res.returncode == 2 and err.startswith("genaug: error: ") and "\n" not in err, res.stderr[-2000:]
    assert "cannot reach the Ray cluster" in err and "ray start --head" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_devices_this_machine_lacks_are_one_line(copy, capsys):
    gen = ["--shards", str(copy), "--gen", "g"]
    assert "no CUDA GPU is visible" in one_line_error(["score", *gen, "--device", "cuda"], capsys)
    assert "not a device" in one_line_error(["score", *gen, "--device", "tpu"], capsys)
    argv = ["generate", "--shards", str(copy), "--model", "tiny", "--column", "gpu", "--engine", "ray",
            "--num-gpus-per-worker", "1"]  # fmt: skip
    err = one_line_error(argv, capsys)
    assert "this machine has 0 CUDA GPU(s)" in err and not (copy / "gen" / "gpu").exists()


@pytest.mark.parametrize(
    "extra, expect",
    [
        (["--storage-option", "anon=true"], "on a local path: drop --storage-option"),
        (["--set", "method_args.temperature=-1"], "method_args.temperature must be above 0"),
        (["--gen", "g,g", "--p", "0.5"], "names column g more than once"),
    ],
    ids=["storage-option-local", "negative-temperature", "gen-twice"],
)
def test_flags_accepted_silently_before_are_one_line(copy, tmp_path, capsys, extra, expect):
    argv = ["train", *TRAIN, "--shards", str(copy), "--out", str(tmp_path / "run"), *extra]
    assert expect in one_line_error(argv, capsys)


def test_a_storage_switch_with_a_non_boolean_value_is_named(capsys):
    err = one_line_error(["verify", "--shards", "s3://bucket/set", "--storage-option", "anon=maybe"], capsys)
    assert "anon is a switch" in err


# -- blind spot: the probe's val split is read as val -----------------------------------------------------------
def test_eval_linear_scores_the_val_split_not_the_train_split(copy, run, tmp_path, capsys):
    """Split `flip` holds train's images with the two labels swapped: a probe that fits train scores 1 - its train
    accuracy there; reading val's features from the train split (or reporting train accuracy) scores the same."""
    src, dst = copy / "train", copy / "flip"
    dst.mkdir()
    write_manifest(dst, {**read_manifest(src), "split": "flip", "plan_hash": "flipped"})
    for name in read_manifest(src)["shards"]:
        samples = []
        for raw in iter_shard_raw(src / name):
            s = {k: v for k, v in raw.items() if not k.startswith("__") or k == "__key__"}
            s["cls"] = str(1 - int(raw["cls"].decode()))
            samples.append(s)
        commit_shard(dst, int(name[:6]), samples, ("jpg", "cls", "json"))
    out = tmp_path / "linear.json"
    argv = ["eval", "linear", str(run), "--shards", str(copy), "--val-split", "flip", "--fast", "--out", str(out),
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    d = json.loads(out.read_text())["details"]
    assert d["train_top1"] >= 0.75, d  # the probe fits train, so the two figures differ
    assert d["top1"] == pytest.approx(1 - d["train_top1"], abs=1e-6), d


# -- cases 3 and 4 over https-like hosting (no listings) --------------------------------------------------------
def test_a_read_only_host_with_a_swapped_shard_or_a_huge_manifest(copy, tmp_path, capsys):
    pytest.importorskip("aiohttp")
    from genaug.testing.servers import start_static_http, stop_server

    shutil.copy(copy / "train" / "000000.tar", copy / "train" / "000001.tar")
    huge = copy.parent / "huge"
    write_synthetic_split(huge, "train", num_shards=1, per_shard=2, size=16, seed=3)
    man = read_manifest(huge / "train")
    n = 100_000
    write_manifest(huge / "train", {**man, "shards": [f"{i:06d}.tar" for i in range(n)], "num_shards": n,
                                    "num_planned": 2 * n})  # fmt: skip
    proc, url = start_static_http(copy.parent, listings=False)
    try:
        err = one_line_error(["inspect", "--shards", f"{url}/set", "--gen", "g", "--n", "12",
                              "--out", str(tmp_path / "c.png")], capsys)  # fmt: skip
        assert "does not match the sha256" in err and f"{url}/set/train/000001.tar" in err
        out = verify_problems(f"{url}/huge", capsys)
        assert "stopped after 8 missing shards in a row, 99991 more not probed" in out
    finally:
        stop_server(proc)


def test_generate_takes_over_at_once_a_lease_a_dead_peer_made_after_the_run_listed(s3, tmp_path, monkeypatch):
    """Case 1 from the command line: `genaug generate` on s3:// lists `.leases/` as it starts; a peer on this host
    then claims shard 0 and dies. The run reads that lease object fresh and takes the shard over at once; read
    through the listing it looks missing, and the run waited out --lease-timeout (300 s): the alarm fails it."""
    import signal
    import socket

    import boto3

    from genaug.generate import runner
    from genaug.shards.storage import as_location

    local = tmp_path / "local"
    write_synthetic_split(local, "train", num_shards=2, per_shard=2, size=16, seed=5)
    fs = as_location(f"s3://{s3}").fs
    fs.put(str(local / "train"), f"{s3}/set/train", recursive=True)
    col = f"{s3}/set/gen/tiny/train"
    client = boto3.client("s3", region_name="us-east-1")
    client.put_object(Bucket=s3, Key="set/gen/tiny/train/.leases/000009.lease", Body=b"{}")  # .leases/ exists
    listed = runner.clear_stale_leases

    def peer_claims_after_the_listing(folder, done, timeout):
        out = listed(folder, done, timeout)  # the run has listed .leases/ now
        doc = {"host": socket.gethostname(), "pid": _dead_pid(), "token": "dead-peer"}
        client.put_object(Bucket=s3, Key="set/gen/tiny/train/.leases/000000.lease", Body=json.dumps(doc).encode())
        return out

    monkeypatch.setattr(runner, "clear_stale_leases", peer_claims_after_the_listing)

    def waited(*_):
        raise TimeoutError("generate waited on the lease of a dead peer instead of taking it over")

    before = signal.signal(signal.SIGALRM, waited)
    signal.alarm(150)  # a hang guard: the takeover takes seconds, the wait took --lease-timeout
    try:
        rc = main(["generate", "--shards", f"s3://{s3}/set", "--model", "tiny", "--column", "tiny", "--k", "1",
                   "--batch-size", "2", "--no-progress"])  # fmt: skip
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    assert rc == 0
    assert fs.exists(f"{col}/000000.json") and fs.exists(f"{col}/000001.json")
