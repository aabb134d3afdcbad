"""Every shipped recipe runs at its shipped settings, scaled down in size but not in structure, past every milestone.

Sizes shrink (tiny backbone and heads, 16 px views, 16 images, batch 8, so an epoch is 2 steps); what makes the
recipes crash or behave differently late in a run is kept: the schedule in epochs (warm-up, queue start, teacher
temperature warm-up, frozen last layer / prototypes) and the ratio of queue length to global batch. Each run
stops one epoch after its last milestone (as a preempted job would), so every switch happens inside the test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from genaug.core.recipes import available, recipe_path
from genaug.testing.runs import tiny_overrides
from genaug.testing.shards import write_synthetic_split
from genaug.train.runner import train

BATCH = 8
N_IMAGES = 16
STEPS_PER_EPOCH = N_IMAGES // BATCH
IMAGENET_STEPS_PER_EPOCH_4096 = 313  # ImageNet-1k at global batch 4096: SwAV's freeze_prototypes_steps


def shipped(method: str) -> dict:
    """The shipped recipe file of `method` as written."""
    return yaml.safe_load(recipe_path("trainers", method).read_text(encoding="utf-8"))


def scaled_settings(method: str) -> tuple[dict, int]:
    """Overrides that shrink `method` but keep its milestones (in epochs) and queue/batch ratio; steps to run."""
    doc = shipped(method)
    args = doc.get("method_args") or {}
    over = tiny_overrides(method)
    milestones = [float((doc.get("schedule") or {}).get("warmup_epochs", 0))]
    shipped_batch = int((doc.get("data") or {}).get("batch_size", 256))
    if "queue_size" in args:  # MoCo v2: keys queue of queue_size rows, a fixed multiple of the batch
        over["method_args.queue_size"] = max(1, int(args["queue_size"] * BATCH / shipped_batch))
    if "queue_length" in args:  # SwAV: queue length vs global batch as shipped (3840 vs 4096: the queue is shorter)
        over["method_args.queue_length"] = int(args["queue_length"] * BATCH / shipped_batch)
        over["method_args.queue_start_epoch"] = args["queue_start_epoch"]
        milestones.append(float(args["queue_start_epoch"]))
    if "freeze_prototypes_steps" in args:
        epochs = args["freeze_prototypes_steps"] / IMAGENET_STEPS_PER_EPOCH_4096
        over["method_args.freeze_prototypes_steps"] = max(1, round(epochs * STEPS_PER_EPOCH))
        milestones.append(epochs)
    for key in ("freeze_last_layer_epochs", "warmup_teacher_temp_epochs"):
        if key in args:
            milestones.append(float(args[key]))
    return over, int(math.ceil(max(milestones) + 1) * STEPS_PER_EPOCH)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shipped") / "set"
    write_synthetic_split(root, "train", num_shards=2, per_shard=N_IMAGES // 2, size=24, num_classes=2, seed=0)
    return root


@pytest.mark.parametrize("method", available("trainers"))
def test_shipped_recipe_runs_past_every_milestone(method, small_set, tmp_path):
    over, steps = scaled_settings(method)
    res = train(
        method, shards=small_set, out=tmp_path / method, batch_size=BATCH, backbone="tiny", image_size=16,
        workers=0, log_every=1, overrides=over, stop_after=steps, progress_bar=False, probe=False,
    )  # fmt: skip
    assert res["step"] == steps
    recipe = yaml.safe_load((tmp_path / method / "recipe.yaml").read_text())
    assert recipe["schedule"] == {**recipe["schedule"], **(shipped(method).get("schedule") or {})}  # as shipped
    rows = [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == steps and all(math.isfinite(r["loss"]) for r in rows), rows[-1]
