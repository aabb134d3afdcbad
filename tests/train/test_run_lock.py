"""Two `genaug train` on one --out: the second is refused with one line naming the holder; the first is unharmed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from genaug.cli import main
from genaug.testing.runs import tiny_overrides
from genaug.testing.shards import write_synthetic_split


def test_second_train_on_one_out_is_refused(tmp_path, capsys):
    shards = tmp_path / "set"
    write_synthetic_split(shards, "train", num_shards=2, per_shard=8, size=24, num_classes=2, seed=0)
    out = tmp_path / "run"
    args = ["train", "--method", "simclr", "--shards", str(shards), "--out", str(out), "--backbone", "tiny",
            "--image-size", "16", "--batch-size", "8", "--workers", "0", "--log-every", "1", "--quiet"]  # fmt: skip
    for k, v in tiny_overrides("simclr").items():
        args += ["--set", f"{k}={v}"]
    first = subprocess.Popen(
        [sys.executable, "-m", "genaug", *args, "--steps", "100000"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").exists() and time.time() < deadline:  # the first run is training
            assert first.poll() is None, first.stderr.read()[-2000:]
            time.sleep(0.2)
        assert main([*args, "--steps", "5"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "in use by another training run" in err and str(first.pid) in err, err
        assert first.poll() is None  # the first run goes on
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
        assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))  # no duplicate steps from the refused one
    finally:
        first.kill()
        first.wait()
    assert main([*args, "--steps", "2"]) == 0  # the kernel dropped the killed run's lock: the folder is usable
