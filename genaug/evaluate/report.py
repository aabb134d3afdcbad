"""Evaluation results: JSON next to the checkpoint, printed tables, and a table + bar chart comparing runs."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from genaug import __version__
from genaug.core.errors import GenaugError
from genaug.core.files import read_json, write_json_atomic

EVAL_DIR = "eval"


def find_in_recipe(recipe: dict | None, key: str):
    """The first value of `key` in a nested recipe (depth-first), or None."""
    if not isinstance(recipe, dict):
        return None
    if key in recipe and not isinstance(recipe[key], dict):
        return recipe[key]
    for v in recipe.values():
        found = find_in_recipe(v, key) if isinstance(v, dict) else None
        if found is not None:
            return found
    return None


#: columns of the report that describe a run rather than measure it
RUN_COLUMNS = ("run", "method", "p", "gen_min_score", "gen_weighting")


def run_info(recipe: dict | None) -> dict:
    """Method name, replacement probability p and fidelity settings of a run, from its resolved recipe (None when
    unknown): gen_min_score (variants below it were never drawn) and gen_weighting (uniform or score)."""
    method = None
    if isinstance(recipe, dict):
        method = recipe.get("method") if isinstance(recipe.get("method"), str) else recipe.get("name")
    return {
        "method": method,
        "p": find_in_recipe(recipe, "p"),
        "gen_min_score": find_in_recipe(recipe, "gen_min_score"),
        "gen_weighting": find_in_recipe(recipe, "gen_weighting"),
    }


def make_doc(kind: str, summary: dict[str, float], details: dict, context: dict) -> dict:
    """A result document: kind, flat summary metrics, full details, and what produced it."""
    return {
        "kind": kind,
        "summary": summary,
        "details": details,
        **context,
        "genaug_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_result(doc: dict, folder: Path, name: str) -> Path:
    """Write a result document as folder/eval/<name>.json (atomically); return its path."""
    out = Path(folder) / EVAL_DIR / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, doc)
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return "-" if v is None else str(v)


def format_table(rows: list[dict], columns: list[str], verbatim: tuple[str, ...] = RUN_COLUMNS) -> str:
    """A plain fixed-width text table (floats to 4 decimals except in the `verbatim` columns)."""
    cells = [[str(r[c]) if c in verbatim and r.get(c) is not None else _fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def summary_table(doc: dict) -> str:
    """The table printed after one evaluation: metric and value, settings below."""
    rows = [{"metric": k, "value": v} for k, v in doc["summary"].items()]
    columns = ["metric", "value"]
    intervals = doc.get("intervals") or {}
    if intervals:  # bootstrap intervals over test images (linear, kNN)
        ci = ((doc.get("settings") or {}).get("bootstrap") or {}).get("ci", 0.95)
        name = f"{100 * ci:g}% CI"
        for r in rows:
            iv = intervals.get(r["metric"])
            r[name] = f"[{iv[0]:.4f}, {iv[1]:.4f}]" if iv else "-"
        columns.append(name)
    settings = doc.get("settings") or {}
    tail = "\n".join(f"  {k}: {json.dumps(v)}" for k, v in settings.items())
    head = f"{doc['kind']}: {doc.get('model', '')}"
    return f"{head}\n{format_table(rows, columns, ('metric', *columns[2:]))}" + (f"\nsettings:\n{tail}" if tail else "")


def collect(runs: list[str | Path]) -> list[dict]:
    """One row per run (a run folder with eval/*.json, or result JSON files): label, method, p, fidelity settings
    (gen_min_score, gen_weighting) and all metrics."""
    rows = []
    for r in runs:
        p = Path(r)
        if p.is_dir():  # oldest first: of two settings of one metric, the newest result fills the row
            files = sorted((p / EVAL_DIR).glob("*.json"), key=lambda f: (f.stat().st_mtime, f.name))
            label = p.name
        elif p.suffix == ".json" and p.is_file():
            files, label = [p], p.parent.parent.name if p.parent.name == EVAL_DIR else p.stem
        else:
            raise GenaugError(f"{p} is neither a run folder nor a result .json: give folders `genaug eval` wrote to")
        if not files:
            raise GenaugError(f"{p} has no results ({p / EVAL_DIR}/*.json): run `{_first_eval(p)}` first")
        row: dict = {c: None for c in RUN_COLUMNS}
        row["run"] = label
        for f in files:
            doc = read_json(f)
            if not isinstance(doc, dict) or "summary" not in doc:
                continue
            info = doc.get("run_info") or {}
            for c in RUN_COLUMNS[1:]:
                row[c] = row[c] if row[c] is not None else info.get(c)
            row.update(doc["summary"])
        rows.append(row)
    return rows


def _first_eval(run: Path) -> str:
    """The command that gives a run folder its first result: kNN on the shard set its recipe trained on."""
    import shlex

    import yaml

    try:
        recipe = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        recipe = None
    shards = (recipe.get("run") or {}).get("shards") if isinstance(recipe, dict) else None
    where = shlex.quote(str(shards)) if shards else "SHARDS"
    return f"genaug eval knn {shlex.quote(str(run))} --shards {where}"


def report(runs: list[str | Path], png: Path | None = None, metrics: list[str] | None = None) -> tuple[str, list[dict]]:
    """A table comparing runs (and a grouped bar chart PNG when `png` is given); returns (table text, rows)."""
    rows = collect(runs)
    names = metrics or sorted({k for r in rows for k in r if k not in RUN_COLUMNS})
    missing = [m for m in names if all(m not in r for r in rows)]
    if missing:
        raise GenaugError(f"--metric {', '.join(missing)} is in none of the runs' results")
    text = format_table(rows, [*RUN_COLUMNS, *names])
    if png is not None:
        bar_chart(rows, names, Path(png))
    return text, rows


def bar_chart(rows: list[dict], metrics: list[str], path: Path) -> Path:
    """Grouped bars: one group per metric, one bar per run (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(rows))
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(metrics) * max(1, n) * 0.5 + 2), 3.6), dpi=100)
    for i, r in enumerate(rows):
        vals = [float(r[m]) if isinstance(r.get(m), (int, float)) else float("nan") for m in metrics]
        label = r["run"] + (f" (p={r['p']})" if r.get("p") is not None else "")
        ax.bar([j + (i - (n - 1) / 2) * width for j in range(len(metrics))], vals, width, label=label)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels(metrics, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("value")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
