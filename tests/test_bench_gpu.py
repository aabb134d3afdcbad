"""scripts/bench_gpu.sh: the no-GPU refusal, and the --cpu-smoke run's JSON and markdown (every section, positive
figures, MFU null on CPU, one table row per JSON row)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_gpu.sh"
SECTIONS = ("generation", "icgan", "training", "loader")


def _run(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "GENAUG_CACHE": str(tmp / "cache")}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_without_gpu_or_smoke_exits_2_with_one_line(tmp_path: Path) -> None:
    p = _run("--out", str(tmp_path / "out"), tmp=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "GPU" in lines[0] and "--cpu-smoke" in lines[0]
    assert not (tmp_path / "out").exists()


def test_cpu_smoke_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = _run("--cpu-smoke", "--out", str(out), tmp=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    assert doc["meta"]["smoke"] is True and doc["meta"]["peak_tflops"] is None
    rows = []
    for name in SECTIONS:
        sec = doc["sections"][name]
        assert sec["rows"], f"section {name} has no measured row"
        assert not [s for s in sec["skipped"] if s["reason"].startswith("failed")]
        rows += sec["rows"]
    for r in rows:
        assert r["images_per_s"] > 0 and r["smoke"] is True and r["device"] == "cpu"
        assert r["mfu"] is None
        assert r["dtype"] and isinstance(r["settings"], dict) and r["settings"]
    gen = doc["sections"]["generation"]["rows"]
    assert {r["what"].split()[0] for r in gen} == {"sd", "sd-unclip"}
    assert {r["dtype"] for r in gen} == {"fp32", "bf16"}
    assert {r["settings"]["channels_last"] for r in gen} == {False, True}
    assert all(r["model_gflop_per_image"] > 0 for r in gen + doc["sections"]["icgan"]["rows"])
    assert {r["dtype"] for r in doc["sections"]["loader"]["rows"]} == {"float32", "uint8"}
    md = (out / "results.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| section")]
    assert len(table) == len(rows)
    for ln, r in zip(table, rows, strict=True):
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert cells[0] == r["section"] and cells[2] == "cpu" and cells[3] == r["dtype"]
        assert cells[6] == "null" and cells[7] == "smoke"
