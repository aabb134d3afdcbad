"""Run under `torchrun --nproc_per_node N` (gloo, CPU): phase `save` streams STEPS steps with WORKERS workers and
saves every rank's data state (gathered, as the Trainer's checkpoint holds them); phase `resume` restores them on
this world size and WORKERS workers and streams to the end of the epoch, all-reducing once per step as DDP does.
Each rank writes the keys it saw to OUT/<phase>-rank<r>.json."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist

from genaug.data.stream import build_train_loader

root, out, phase, workers, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
views = {"preset": "small", "size": 16}
loader = build_train_loader(
    root, "train", gen_columns=["sd"], p=0.5, views_recipe=views, batch_size=2, num_workers=workers, seed=0,
    shuffle_buffer=3,
)  # fmt: skip
state = os.path.join(out, "state.pt")
if phase == "resume":
    loader.load_state_dict(torch.load(state, weights_only=True))
    loader.set_epoch(0)
keys, n = [], 0
for batch in loader:
    t = torch.ones(1)
    dist.all_reduce(t)  # a collective per step: a rank with fewer batches would hang its peers
    keys += batch["key"]
    n += 1
    if phase == "save" and n == steps:
        break
if phase == "save":
    states = [None] * world
    dist.all_gather_object(states, loader.state_dict())
    if rank == 0:
        torch.save(states, state)
with open(os.path.join(out, f"{phase}-rank{rank}.json"), "w") as f:
    json.dump({"keys": keys, "steps": n}, f)
dist.barrier()
dist.destroy_process_group()
