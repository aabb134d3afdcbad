"""The plan of a resumed run on another number of processes: the run's global batch, learning rate and schedule kept.

A run's `resolved:` section fixes its optimisation when it starts: global batch G = batch x processes x grad_accum,
the learning rate scaled from G, total and warm-up steps, steps per epoch = floor(samples / G). A resume on N'
processes keeps all of them (the same run, continued): each process takes G / N' samples per optimizer step, as
G / (N' x A') samples in A' micro-batches, A' the run's grad_accum (or the --grad-accum of this session) when it
divides G / N', else the smallest divisor of G / N' above it. Losses that couple a batch (contrastive negatives,
Barlow Twins / VICReg statistics, SyncBN) gather across processes, so with A' unchanged they see the same batch of
N' x G / (N' x A') = G / A' samples as before. A process count that does not divide G is refused in one line
naming those that do. `resolved.history` lists the sessions: {from_step, world_size, workers, batch_size, grad_accum}.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from genaug.core.errors import GenaugError
from genaug.core.recipes import recipe_hash

# keys of a recipe that may change between a run and its resumption (how it runs, not what it learns)
RESUME_FREE = ("loop", "resolved")
# data.* keys a resumed run may change: where bytes come from, and the loader workers (the stream resumes on any count)
DATA_RESUME_FREE = ("cache_dir", "cache_limit", "num_workers")
#: the parts of `resolved:` a session may change; every other value is the run's, kept from its first session
SESSION_KEYS = ("world_size", "workers", "batch_size", "grad_accum", "history")


def session(from_step: int, world_size: int, workers: int, batch_size: int, grad_accum: int) -> dict:
    """One entry of resolved.history: how the run trained from `from_step` on."""
    return {
        "from_step": int(from_step),
        "world_size": int(world_size),
        "workers": int(workers),
        "batch_size": int(batch_size),
        "grad_accum": int(grad_accum),
    }


def history_of(saved: dict) -> list[dict]:
    """resolved.history of a saved recipe (one session rebuilt for runs recorded before histories existed)."""
    res = saved.get("resolved") or {}
    if isinstance(res.get("history"), list) and res["history"]:
        return [dict(h) for h in res["history"]]
    data, loop = saved.get("data") or {}, saved.get("loop") or {}
    return [
        session(
            0,
            int(res.get("world_size", 1)),
            int(data.get("num_workers", 4)),
            int(data.get("batch_size", 256)),
            int(loop.get("grad_accum", 1)),
        )
    ]


def share(global_batch: int, world_size: int, grad_accum: int, run_dir: Path | str, first: dict) -> tuple[int, int]:
    """(per-process batch, grad_accum) that make `global_batch` on `world_size` processes, or a one-line error."""
    if global_batch % world_size:
        fits = [n for n in range(1, global_batch + 1) if global_batch % n == 0]
        shown = ", ".join(map(str, fits[:12])) + (", ..." if len(fits) > 12 else "")
        raise GenaugError(
            f"{run_dir} keeps its global batch of {global_batch} (--batch-size {first['batch_size']} x "
            f"{first['world_size']} processes x grad_accum {first['grad_accum']}), which {world_size} processes "
            f"cannot share evenly: resume on {shown} processes, or train anew in another --out with a --batch-size "
            f"for {world_size}"
        )
    per = global_batch // world_size
    accum = next(d for d in range(min(grad_accum, per), per + 1) if per % d == 0)
    if accum != grad_accum:
        warnings.warn(
            f"genaug: grad_accum {grad_accum} does not divide the {per} samples each of {world_size} processes takes "
            f"per step (global batch {global_batch}): accumulating {accum} micro-batches of {per // accum}",
            stacklevel=2,
        )
    return per // accum, accum


def continue_plan(saved: dict, recipe: dict, world_size: int, run_dir: Path | str) -> dict:
    """The `resolved:` section of a session resuming the run whose recipe.yaml is `saved`, on `world_size` processes.

    The run's plan (global batch, lr, steps, warm-up, precision) is kept; this session's per-process batch and
    grad_accum share the global batch (`share`); its history entry's from_step is filled in by `record_session`."""
    old = dict(saved.get("resolved") or {})
    history = history_of(saved)
    global_batch = int(old.get("global_batch") or 0)
    if global_batch < 1:
        raise GenaugError(f"{run_dir}/recipe.yaml has no resolved.global_batch: resume it with its own genaug version")
    accum = int((recipe.get("loop") or {}).get("grad_accum", 1))
    batch, accum = share(global_batch, world_size, accum, run_dir, history[0])
    workers = int((recipe.get("data") or {}).get("num_workers", 4))
    plan = {k: v for k, v in old.items() if k not in SESSION_KEYS}
    plan.update(world_size=world_size, workers=workers, batch_size=batch, grad_accum=accum, history=history)
    return plan


def record_session(plan: dict, step: int) -> dict:
    """`plan` with this session in its history from `step` (sessions that began at or after `step` dropped: no
    step of theirs survived in the checkpoint resumed)."""
    now = session(step, plan["world_size"], plan["workers"], plan["batch_size"], plan["grad_accum"])
    kept = [h for h in plan.get("history") or [] if int(h.get("from_step", 0)) < step]
    same = kept and {k: v for k, v in kept[-1].items() if k != "from_step"} == {
        k: v for k, v in now.items() if k != "from_step"
    }
    return {**plan, "history": kept if same else [*kept, now]}


def _resume_view(recipe: dict) -> dict:
    """`recipe` without the data.* keys a resumed run may change (DATA_RESUME_FREE)."""
    data = recipe.get("data") if isinstance(recipe, dict) else None
    if not isinstance(data, dict):
        return recipe
    return {**recipe, "data": {k: v for k, v in data.items() if k not in DATA_RESUME_FREE}}


def with_defaults(saved: dict) -> dict:
    """A saved recipe.yaml read by today's schema: keys added since it was written take their defaults (their
    default is what that run did), so a run folder of an older genaug still resumes; unreadable: as it is."""
    from genaug.train.recipe import parse_train_recipe

    try:
        return parse_train_recipe(saved).as_recipe()
    except GenaugError:
        return saved


def check_resume(recipe: dict, run_dir: Path, resume, precision: str) -> tuple[Path | None, dict | None]:
    """(checkpoint to resume from, the run folder's saved recipe.yaml or None) for the plain-YAML `recipe` of this
    invocation; a run folder of another recipe or data, batch size or precision is refused in one line. The number
    of processes and workers may change: continue_plan keeps the run's plan."""
    from genaug.core.yamlio import read_yaml
    from genaug.train.checkpoint import resolve_resume

    ckpt = resolve_resume(resume, run_dir)
    saved = Path(run_dir) / "recipe.yaml"
    if ckpt is None or not saved.exists():
        return ckpt, None
    old = read_yaml(saved)
    mine = recipe_hash(_resume_view(recipe), RESUME_FREE)
    if not isinstance(old, dict) or recipe_hash(_resume_view(with_defaults(old)), RESUME_FREE) != mine:
        was = ((old.get("data") or {}).get("batch_size") if isinstance(old, dict) else None) or 0
        now = (recipe.get("data") or {}).get("batch_size")
        if isinstance(old, dict) and was != now:
            full = with_defaults(old)
            same = {**full, "data": {**(full.get("data") or {}), "batch_size": now}}
            if recipe_hash(_resume_view(same), RESUME_FREE) == mine:
                raise GenaugError(
                    f"{run_dir} was started with --batch-size {was} and this run has {now}: a resume keeps the run's "
                    f"global batch (it sets the per-process batch from the number of processes itself); pass "
                    f"--batch-size {was}, or choose a new --out"
                )
        raise GenaugError(
            f"{run_dir} holds a run of another recipe or data: resume it with the same flags, or choose a new --out"
        )
    was = (old.get("resolved") or {}).get("precision")
    if was is not None and was != precision:
        raise GenaugError(
            f"{run_dir} was trained in precision {was} and this run resolves to {precision}: pass --precision {was} "
            "to resume it, or choose a new --out"
        )
    return ckpt, old
