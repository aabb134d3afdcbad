"""Run under `torchrun --nproc_per_node 2` (gloo, CPU): each rank streams one epoch with 2 workers, all-reducing
once per step as DDP does (uneven per-rank batch counts would hang here), and writes the keys it saw.

A third argument `partial` streams with gen_partial (rank 0 looks up the epoch's column shards and broadcasts
them); each rank then also writes the shards its epoch used, its coverage and which keys had a view replaced."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist

from genaug.data.stream import build_train_loader

root, out = sys.argv[1], sys.argv[2]
partial = sys.argv[3:] == ["partial"]
dist.init_process_group("gloo")
rank = dist.get_rank()
views = {"preset": "small", "size": 16}
loader = build_train_loader(
    root,
    "train",
    gen_columns=["sd"],
    p=0.5,
    views_recipe=views,
    batch_size=4,
    num_workers=2,
    seed=0,
    shuffle_buffer=6,
    gen_partial=partial,
)
keys, steps, replaced = [], 0, []
for batch in loader:
    t = torch.ones(1)
    dist.all_reduce(t)  # a collective per step: a rank with fewer batches would hang its peer
    keys += batch["key"]
    replaced += [k for k, r in zip(batch["key"], batch["replaced"].any(dim=1).tolist(), strict=True) if r]
    steps += 1
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    doc = {"keys": keys, "steps": steps, "steps_per_epoch": loader.steps_per_epoch, "replaced": replaced}
    if partial:
        doc.update(sets=sorted(loader._sets[0][0]), coverage=loader.coverage_of(0))
    json.dump(doc, f)
dist.barrier()
dist.destroy_process_group()
