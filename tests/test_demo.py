"""`genaug demo`, the README's first command, end to end (shortened: K=1, 10 training steps)."""

import json
import subprocess
import sys

from PIL import Image

from genaug.shards.verify import verify_set


def test_demo_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "genaug", "demo", "--out", str(out), "--k", "1", "--steps", "10"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "linear probe top-1" in r.stdout
    shards = out / "shards" / "digits"
    reports, problems = verify_set(str(shards))
    assert problems == []
    assert {str(rep.folder.relative_to(shards)) for rep in reports} == {"train", "val", "gen/tiny/train"}
    assert sum(rep.samples for rep in reports if rep.folder.name == "val") == 359
    run = out / "runs" / "simclr-p0.5"
    assert (run / "backbone.safetensors").exists() and (run / "recipe.yaml").exists()
    (result,) = list((run / "eval").glob("linear-*.json"))
    assert json.loads(result.read_text())["summary"]["linear/top1"] > 0.5  # 10 classes: chance is 0.1
    sheet = Image.open(out / "contact-tiny.png")
    assert sheet.width > 2 * 96 and sheet.height > 8 * 96  # 8 rows of source + 1 variant
    assert (out / "views-tiny-p0.5.png").exists()
