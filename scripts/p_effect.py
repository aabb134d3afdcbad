"""The p effect on the demo's digits: SimCLR at p in {0, 0.25, 0.5} with the fitted img2img generator and with the
noise (`tiny`) generator as a control, over several seeds; kNN (k=20) and linear-probe top-1 on the val split.

    nice python scripts/p_effect.py --out p-effect --seeds 5

Everything else is the demo's setting (genaug.demo: digits at 32 px, K=2, tiny backbone, 150 steps, DEMO_OVERRIDES,
the demo's fitted generator DEMO_FIT at strength 0.5). p = 0 uses no generated view, so its runs are shared by both
generators. Each run's result is appended to OUT/results.jsonl as it finishes (a rerun skips what is there), and the
table (mean, std over seeds, and the paired difference to p = 0 of the same seed: mean, std, wins) is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from genaug.demo import DEMO_FIT, DEMO_OVERRIDES, fit_digits_generator, write_digits_tree  # noqa: E402

SIZE, K = 32, 2


def prepare(out: Path, fit_steps: int) -> tuple[Path, dict[str, str]]:
    """The digits shard set with both generated columns; {generator name: column}."""
    from genaug.generate import generate
    from genaug.ingest.run import ingest

    shards = out / "shards" / "digits"
    roots = write_digits_tree(out / "digits-src", size=SIZE)
    for split in ("train", "val"):
        ingest(roots[split], shards, split=split, per_shard=256, workers=1, progress=False)
    fit = fit_digits_generator(shards, out / "generator", fit_steps, progress=False)
    img = generate(model="img2img-ddpm", shards=str(shards), split="train", k=K, weights=fit["model"],
                   overrides={"output.size": SIZE}, progress=False)  # fmt: skip
    tiny = generate(model="tiny", shards=str(shards), split="train", k=K, overrides={"output.size": SIZE},
                    progress=False)  # fmt: skip
    return shards, {"img2img": img["column"], "noise": tiny["column"]}


def one_run(shards: Path, out: Path, column: str | None, p: float, seed: int, steps: int) -> dict:
    """Train the demo's SimCLR at p with `column` as the generated views; kNN and linear top-1 on val."""
    from genaug.evaluate.options import KnnOptions, LinearOptions
    from genaug.evaluate.run import eval_knn, eval_linear
    from genaug.train.runner import train

    run_dir = out / "runs" / f"{column or 'none'}-p{p}-s{seed}"
    res = train(method="simclr", shards=str(shards), p=p, gen=[column] if column else None, out=run_dir, steps=steps,
                batch_size=64, backbone="tiny", image_size=SIZE, workers=0, seed=seed, overrides=DEMO_OVERRIDES,
                progress_bar=False)  # fmt: skip
    lin = eval_linear(LinearOptions(model=res["run_dir"], image_size=SIZE, quiet=True, shards=shards,
                                    train_split="train", val_split="val", epochs=50, batchnorm=True))  # fmt: skip
    knn = eval_knn(KnnOptions(model=res["run_dir"], shards=shards, train_split="train", val_split="val", ks=[20],
                              image_size=SIZE, quiet=True))  # fmt: skip
    lin, knn = lin["summary"]["linear/top1"], knn["summary"]["knn/k20/top1"]
    return {"knn": float(knn), "linear": float(lin)}


def table(rows: list[dict]) -> str:
    """Markdown: per (generator, p) mean and std over seeds, and the paired difference to p = 0."""
    base = {r["seed"]: r for r in rows if r["p"] == 0}
    lines = ["| generator | p | seeds | kNN top-1 | linear top-1 | kNN - p0 (paired) | linear - p0 (paired) |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for gen, p in [("none", 0.0), ("img2img", 0.25), ("img2img", 0.5), ("noise", 0.25), ("noise", 0.5)]:
        sel = [r for r in rows if r["generator"] == gen and r["p"] == p]
        if not sel:
            continue
        cells = [gen, f"{p:g}", str(len(sel))]
        for m in ("knn", "linear"):
            v = np.array([r[m] for r in sel])
            cells.append(f"{100 * v.mean():.1f} ± {100 * v.std(ddof=1) if len(v) > 1 else 0:.1f}")
        for m in ("knn", "linear"):
            d = np.array([r[m] - base[r["seed"]][m] for r in sel if r["seed"] in base])
            if p == 0 or not len(d):
                cells.append("")
                continue
            sd = 100 * d.std(ddof=1) if len(d) > 1 else 0.0
            cells.append(f"{100 * d.mean():+.1f} ± {sd:.1f} ({int((d > 0).sum())}/{len(d)} up)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Run every (generator, p, seed) not yet in OUT/results.jsonl, then print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("p-effect"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=150, help="SimCLR steps per run (the demo's 150)")
    ap.add_argument("--fit-steps", type=int, default=DEMO_FIT["steps"])
    ap.add_argument("--table-only", action="store_true", help="print the table of what is in results.jsonl")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "results.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    if not args.table_only:
        shards, cols = prepare(args.out, args.fit_steps)
        # seed by seed, so that a partial run still holds complete paired comparisons
        plan = [(s, g, p) for s in range(args.seeds) for g, p in
                [("none", 0.0), ("img2img", 0.5), ("noise", 0.5), ("img2img", 0.25), ("noise", 0.25)]]  # fmt: skip
        for seed, gen, p in plan:
            if any(r["seed"] == seed and r["generator"] == gen and r["p"] == p for r in rows):
                continue
            t0 = time.perf_counter()
            got = one_run(shards, args.out, cols.get(gen), p, seed, args.steps)
            row = {"seed": seed, "generator": gen, "p": p, **got, "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
