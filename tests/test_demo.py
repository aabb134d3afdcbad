"""`genaug demo`, the README's first command, end to end: with the noise generator (K=1, its own 150 training steps),
and with the digits diffusion model it fits (small settings), whose variants keep their class."""

import json
import subprocess
import sys

from PIL import Image

from genaug.demo import DEMO_KNN_MARGIN
from genaug.shards.verify import verify_set


def test_demo_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "genaug", "demo", "--out", str(out), "--k", "1", "--model", "tiny"],
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
    # the claim the demo reliably reaches (measured over seeds 0-5 in BENCHMARKS.md): training beats the same
    # backbone at random init in kNN top-1 by at least DEMO_KNN_MARGIN; a trainer that learns nothing fails here
    knn = json.loads((run / "eval" / "knn-val.json").read_text())["summary"]["knn/k20/top1"]
    knn0 = json.loads((out / "runs" / "simclr-random-init" / "eval" / "knn-val.json").read_text())["summary"]
    assert knn >= knn0["knn/k20/top1"] + DEMO_KNN_MARGIN, (knn, knn0)
    lin = json.loads((run / "eval" / "linear-val.json").read_text())["summary"]["linear/top1"]
    assert lin > 0.9  # 10 classes: chance is 0.1
    sheet = Image.open(out / "contact-tiny.png")
    assert sheet.width > 2 * 96 and sheet.height > 8 * 96  # 8 rows of source + 1 variant
    assert (out / "views-tiny-p0.5.png").exists()


def test_demo_fits_a_digits_generator_whose_variants_keep_their_class(tmp_path):
    """The default demo path (fit, img2img) with a short fit; then the class-consistency figure on its model."""
    from genaug.generate.consistency import class_consistency
    from genaug.generate.recipe import resolve_recipe

    out = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "genaug", "demo", "--out", str(out), "--k", "1", "--fit-steps", "400", "--steps", "4"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "fitting a diffusion model" in r.stdout and "img2img-ddpm" in r.stdout
    reports, problems = verify_set(str(out / "shards" / "digits"))
    assert problems == [] and "gen/img2img-ddpm/train" in {
        str(rep.folder.relative_to(out / "shards" / "digits")) for rep in reports
    }
    assert Image.open(out / "contact-img2img-ddpm.png").height > 8 * 96
    (model,) = (out / "generator").glob("digits-*/model")
    strength = resolve_recipe("img2img-ddpm")["sampling"]["strength"]  # the shipped strength
    res = class_consistency(str(model), [strength], k=2, n=100)
    row = res["rows"][0]
    assert row["keep"] >= 0.8 and row["near_copy"] < 0.1, res
