"""`genaug generate` and `genaug train --gen-partial` at the same time, as real processes; the trainer killed -9.

The generator is slowed down per shard (GENAUG_TEST_DELAY: each shard's tar sits without its stats, i.e. not yet
committed, for a while); a first one makes all shards but the last (--limit-shards), a second one the rest. The
trainer (a `genaug train` process) starts when the column's manifest exists and is killed -9 at a checkpoint in the
middle of an epoch that had only part of the column. Once the progress record lists more shards than that epoch
used (so a resume that looked again would train on other batches), it is resumed, one epoch per session while the
second generator runs, the last epoch after the generation has finished. The reference is
the same run uninterrupted within each epoch, given the same shard sets: the test rewinds the column's progress
record to each epoch's recorded set and trains epoch after epoch (a checkpoint at an epoch's end resumes exactly,
and the next epoch reads its set from the record when it starts). Both must produce the same losses on every step,
with the same coverage history.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gen_partial_helpers import (  # noqa: E402
    COUNTS,
    SPE,
    TINY,
    image_folder,
    ingest_source,
    losses,
    partial_state,
    train_flags,
    write_record,
)

from genaug.shards.layout import shard_name  # noqa: E402
from genaug.shards.progress import PROGRESS_NAME  # noqa: E402
from genaug.shards.storage import as_location  # noqa: E402
from genaug.train.checkpoint import list_checkpoints  # noqa: E402
from genaug.train.runner import train  # noqa: E402

EPOCHS = 8
NAMES = [shard_name(i) for i in range(len(COUNTS))]
GEN = ["--model", "tiny", "--k", "1", "--steps", "1", "--batch-size", "8", "--no-fidelity", "--no-progress"]
TRAIN_FLAGS = train_flags("tiny", EPOCHS)


def _train_argv(shards: str, out: Path) -> list[str]:
    f = TRAIN_FLAGS
    argv = ["train", "--method", f["method"], "--shards", shards, "--gen", f["gen"], "--gen-partial", "--p", "0.5"]
    argv += ["--steps", str(f["steps"]), "--batch-size", "4", "--backbone", "tiny", "--image-size", "16"]
    argv += ["--workers", "0", "--log-every", "1", "--ckpt-every", "1", "--quiet", "--out", str(out)]
    return [sys.executable, "-m", "genaug", *argv] + [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


def _state(run: Path) -> dict | None:
    """The newest checkpoint's --gen-partial state (None before the first, or while one is rotated away)."""
    try:
        return partial_state(run) if list_checkpoints(run) else None
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


def _killable(st: dict | None) -> bool:
    """A checkpoint in the middle of an epoch whose set is only part of the column."""
    return st is not None and 0 < st["step"] < SPE and st["coverage"].get(st["epoch"], 1.0) < 1.0


def _live(shards: str, tmp: Path, env: dict) -> None:
    env = {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    ingest_source(image_folder(tmp / "images"), shards)
    column = as_location(f"{shards}/gen/tiny/train")

    def generate(*extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "genaug", "generate", "--shards", shards, *GEN, *extra],
            env={**env, "GENAUG_TEST_DELAY": "tar-renamed=0.5"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    # the first generator makes shards 0-2 only: the column stays partial until the test starts the second, so the
    # trainer is sure to checkpoint in a partial epoch whatever the machine's speed
    gens = [generate("--limit-shards", str(len(COUNTS) - 1))]
    run = tmp / "run"
    trainer = None
    try:
        deadline = time.time() + 240
        while not (column / "manifest.json").exists() and gens[0].poll() is None and time.time() < deadline:
            time.sleep(0.05)
        trainer = subprocess.Popen(_train_argv(shards, run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while not _killable(_state(run)) and trainer.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        trainer.send_signal(signal.SIGKILL)  # mid-epoch, in an epoch with only part of the column
        err = trainer.communicate(timeout=60)[1].decode()
        assert trainer.returncode == -signal.SIGKILL, f"the trainer ended before it could be killed: {err}"
        killed = _state(run)
        assert _killable(killed), f"no checkpoint in a partial epoch to kill at: {killed}"
        gens.append(generate())  # the rest of the column (beside the first, by leases), while the trainer resumes
        # resume only once more shards are committed than the interrupted epoch used: a resume that looked again
        # instead of using the checkpoint's set would then train on other batches
        while _listed(column) <= set(killed["sets"][killed["epoch"]]) and time.time() < deadline:
            time.sleep(0.05)
        # resumed in this process, one epoch per session while the generator goes on (each epoch reads the record
        # when it starts, so the coverage rises as shards commit); the last epoch once the generation has finished
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step = killed["epoch"] * SPE + killed["step"]
            for e in range(killed["epoch"], EPOCHS):
                if e == EPOCHS - 1:
                    for g in gens:
                        assert g.wait(timeout=240) == 0, g.stderr.read().decode()
                step = train(shards=shards, out=run, stop_after=(e + 1) * SPE - step, **TRAIN_FLAGS)["step"]
        assert step == EPOCHS * SPE
    finally:
        for p in (*gens, trainer):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    errs = [err, *(str(w.message) for w in caught)]
    warned = "".join(errs)
    for bad in ("checksum", "missing", "skipping", "misaligned"):  # no shard read before its commit, none damaged
        assert bad not in warned, warned
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["gen_fallback"] == 0 and r["data_skipped"] == 0 for r in metrics)  # no shard left out as damaged
    st = partial_state(run)
    cover = [st["coverage"][e] for e in range(EPOCHS)]
    total = sum(COUNTS)
    for e in range(EPOCHS):  # coverage is the share of samples of the epoch's shards
        assert cover[e] == sum(c for n, c in zip(NAMES, COUNTS, strict=True) if n in st["sets"][e]) / total
    print("coverage by epoch", cover, "killed at", (killed["epoch"], killed["step"]))
    assert cover == sorted(cover) and cover[0] < 1.0 and cover[-1] == 1.0, cover  # rises to 1.0
    assert st["sets"][killed["epoch"]] == killed["sets"][killed["epoch"]]  # the resumed epoch kept its set
    rows = losses(run)
    assert [r[0] for r in rows] == list(range(1, EPOCHS * SPE + 1))
    assert all(r[4] == cover[r[3]] for r in rows)
    # the reference: each epoch run whole on its recorded set, the record rewound to it before the epoch starts
    ref = tmp / "ref"
    e = 0
    while e < EPOCHS:
        n = 1
        while e + n < EPOCHS and st["sets"][e + n] == st["sets"][e]:
            n += 1  # epochs of one set: one session
        write_record(column, st["sets"][e])
        train(shards=shards, out=ref, stop_after=n * SPE, **TRAIN_FLAGS)
        e += n
    assert losses(ref) == rows  # the same batches: bitwise equal losses, the same coverage on every step


def _listed(column) -> set[str]:
    """The shards the column's progress record lists now."""
    try:
        return set(json.loads((column / PROGRESS_NAME).read_bytes())["shards"])
    except FileNotFoundError:
        return set()


def test_generate_and_train_at_once_killed_trainer_resumes_exactly(tmp_path):
    _live(str(tmp_path / "set"), tmp_path, dict(os.environ))


@pytest.mark.slow
def test_same_against_an_object_store(tmp_path, s3):
    _live(f"s3://{s3}/set", tmp_path, dict(os.environ))
