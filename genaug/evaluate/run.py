"""The `genaug eval` commands as Python functions: each takes its options model (genaug.evaluate.options, where
every option is declared once), features in, JSON results out.

    eval_linear(LinearOptions(model="runs/simclr", shards="imagenette", fast=True))
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genaug.core.config import command_words
from genaug.core.errors import GenaugError
from genaug.core.hashing import stable_hash
from genaug.evaluate.bootstrap import accuracy_interval, bootstrap_settings
from genaug.evaluate.encoders import Builder, LoadedEncoder, load_encoder
from genaug.evaluate.features import FeatureSet, Preprocess, cached_features, split_folder
from genaug.evaluate.options import (
    CLI_ONLY,
    EvalOptions,
    FeatureFlags,
    KnnOptions,
    LinearOptions,
    OodOptions,
    ProbeData,
    ReportOptions,
    SimilarityOptions,
)
from genaug.evaluate.report import make_doc, run_info, summary_table, write_result
from genaug.shards.storage import is_url


@dataclass
class Source:
    """Where features come from: an encoder (run folder, checkpoint, HF encoder) or a features .npz file."""

    path: Path
    encoder: LoadedEncoder | None = None

    @property
    def home(self) -> Path:
        """The folder results are written next to."""
        return self.encoder.home if self.encoder is not None else self.path.parent

    @property
    def label(self) -> str:
        """A short name of the model."""
        if self.encoder is not None:
            return self.encoder.home.name
        return self.path.stem


def open_source(model: str | os.PathLike, builder: Builder | None = None) -> Source:
    """A features .npz file as is, anything else loaded as an encoder."""
    p = Path(model)
    if p.suffix == ".npz":
        if not p.is_file():
            raise GenaugError(f"features file {p} does not exist")
        return Source(p)
    return Source(p, load_encoder(p, builder=builder))


def get_features(
    src: Source, shards: str | None, split: str, flags: FeatureFlags, features_file: str | os.PathLike | None = None
) -> FeatureSet:
    """Features of `split`: from a given .npz, or extracted with the source's encoder (cached next to it) as `flags`
    say (image size, batch size, workers, device, limit)."""
    if features_file is not None:
        return FeatureSet.load(Path(features_file))
    if src.encoder is None:
        if src.path.suffix == ".npz":
            return FeatureSet.load(src.path)
        raise GenaugError("no encoder and no features file: give a run folder or --*-features files")
    if shards is None:
        raise GenaugError("--shards is required to extract features with an encoder (or give --*-features files)")
    folder = split_folder(shards, split)
    enc = src.encoder
    pre, image_size = None, flags.image_size
    if image_size:  # a flag changes the eval size; a run keeps its own resize ratio and normalisation
        views = (enc.recipe or {}).get("views") if enc.recipe and "method" in enc.recipe else None
        pre = Preprocess.from_views(views, image_size) if views is not None else Preprocess(image_size=image_size)
    return cached_features(
        enc.module,
        enc.encoder_id,
        folder,
        enc.home / "features",
        pre,
        limit=flags.limit,
        batch_size=flags.extract_batch_size,
        device=flags.device,
        num_workers=flags.workers,
        progress=True,
    )


def _pre(*sets: FeatureSet) -> dict | None:
    """The preprocessing the features were extracted with (None for features given as files without it), with the
    number of undecodable images skipped across `sets`."""
    pre = next((fs.meta.get("preprocess") for fs in sets if (fs.meta or {}).get("preprocess")), None)
    skipped = sum(int((fs.meta or {}).get("skipped_images", 0)) for fs in sets)
    return {**pre, "skipped_images": skipped} if pre is not None else None


def _context(src: Source | None, shards, **kw) -> dict:
    enc = src.encoder if src is not None else None
    return {
        "model": str(src.path) if src is not None else None,
        "encoder_id": enc.encoder_id if enc is not None else None,
        "run_info": run_info(enc.recipe if enc is not None else None),
        "shards": str(shards) if shards is not None else None,
        **kw,
    }


def _finish(doc: dict, home: Path, name: str, out: str | os.PathLike | None, quiet: bool) -> dict:
    path = Path(out) if out is not None else None
    if path is not None and path.suffix == ".json":
        path.parent.mkdir(parents=True, exist_ok=True)
        from genaug.core.files import write_json_atomic

        write_json_atomic(path, doc)
    else:
        path = write_result(doc, path if path is not None else home, name)
    doc["path"] = str(path)
    if not quiet:
        print(summary_table(doc))
        print(f"results: {path}")
        if doc.get("command"):
            print(f"rerun: {doc['command']}")
    return doc


def _train_val_features(o: ProbeData | FeatureFlags, builder: Builder | None) -> tuple[Source, FeatureSet, FeatureSet]:
    """The encoder source and the features of the train and val splits (extracted and cached, or given files)."""
    if not (o.model or o.train_features):
        raise GenaugError(
            "give a model (run folder, backbone.safetensors, checkpoint) or --train-features/--val-features"
        )
    if o.shards is not None:  # both splits exist (a URL: reachable) before the model is loaded
        for split, given in ((o.train_split, o.train_features), (o.val_split, o.val_features)):
            if given is None:
                split_folder(o.shards, split)
    src = open_source(o.model or o.train_features, builder)
    tr = get_features(src, o.shards, o.train_split, o, features_file=o.train_features)
    va = get_features(src, o.shards, o.val_split, o, features_file=o.val_features)
    return src, tr, va


# options that change how a result is computed, not what it is (nor which model: the encoder id stands for it)
NOT_RESULT = ("extract_batch_size", "workers", "device", "out", "quiet", "model", "a")
# the order a result's command lists the flags of these options in (their flags and defaults come from the model;
# any other result-changing option follows them in the model's order)
COMMAND_ORDER = (
    "shards", "train_split", "val_split", "train_features", "val_features", "solver", "epochs", "batch_size", "lr",
    "weight_decay", "batchnorm", "fast", "seed", "ks", "temperature", "image_size", "limit", "n_boot", "ci",
)  # fmt: skip


def result_args(opts: EvalOptions) -> dict:
    """The options a result depends on (what its setting id hashes): every option but how it is computed."""
    return {k: v for k, v in opts.model_dump().items() if k not in NOT_RESULT and k not in CLI_ONLY}


def result_command(kind: str, opts: LinearOptions | KnnOptions) -> str:
    """The `genaug eval KIND ...` command that reproduces a result: the model and every result-changing option that
    differs from its default in the options model (--shards always), quoted for a POSIX shell."""
    args = result_args(opts)
    order = sorted(args, key=lambda n: COMMAND_ORDER.index(n) if n in COMMAND_ORDER else len(COMMAND_ORDER))
    words = ["genaug", "eval", kind] + ([str(opts.model)] if opts.model else [])
    words += command_words(opts, order, always=("shards",))
    return " ".join(shlex.quote(w) for w in words)


def setting_id(src: Source, args: dict) -> str:
    """A short hash of what a result depends on (the weights, the data and every result-changing option in `args`,
    see result_args): the result file's name carries it, so results of other settings never overwrite each other."""
    key = {}
    for name, value in args.items():
        if isinstance(value, (str, os.PathLike)) and not is_url(str(value)) and Path(value).exists():
            value = str(Path(value).resolve())  # a relative and an absolute path to one set are one setting
        key[name] = list(value) if isinstance(value, (list, tuple)) else value
    key["encoder"] = src.encoder.encoder_id if src.encoder is not None else str(src.path.resolve())
    return stable_hash(key)[:10]


def _intervals(hits: dict[str, np.ndarray], o: LinearOptions | KnnOptions) -> dict[str, list[float] | None]:
    """{metric: [low, high]} bootstrap intervals over test images of per-image hits {metric: array}."""
    return {name: accuracy_interval(h, o.n_boot, o.ci, o.seed) for name, h in hits.items()}


def eval_linear(o: LinearOptions, builder: Builder | None = None) -> dict:
    """Linear probe on frozen features: top-1/top-5 on the val split with bootstrap intervals over val images,
    written as eval/linear-<split>-<setting id>.json next to the model, with the command that reproduces it."""
    from genaug.evaluate.linear import ProbeConfig, linear_probe

    src, tr, va = _train_val_features(o, builder)
    probe = o.model_dump(include={"epochs", "batch_size", "lr", "weight_decay", "batchnorm", "seed", "device"})
    cfg = ProbeConfig(solver="ridge" if o.fast else o.solver, **probe)
    res, _ = linear_probe(tr.features, tr.labels, va.features, va.labels, cfg)
    hits = res.pop("hits")
    summary = {"linear/top1": res["top1"], "linear/top5": res["top5"]}
    intervals = _intervals({f"linear/{m}": h for m, h in hits.items()}, o)
    return _probe_result("linear", o, src, summary, res, intervals, _pre(tr, va))


def eval_knn(o: KnnOptions, builder: Builder | None = None) -> dict:
    """Weighted kNN (cosine, exp(sim/T)) for each k: top-1/top-5 on the val split with bootstrap intervals over val
    images (seeded by `seed`), written as eval/knn-<split>-<setting id>.json with the command that reproduces it."""
    from genaug.evaluate.knn import knn_classify

    src, tr, va = _train_val_features(o, builder)
    res = knn_classify(tr.features, tr.labels, va.features, va.labels, tuple(o.ks), o.temperature, device=o.device)
    hits = res.pop("hits")
    summary = {f"knn/{k}/top1": v["top1"] for k, v in res["results"].items()}
    summary |= {f"knn/{k}/top5": v["top5"] for k, v in res["results"].items()}
    intervals = _intervals({f"knn/{k}/{m}": h for k, d in hits.items() for m, h in d.items()}, o)
    return _probe_result("knn", o, src, summary, res, intervals, _pre(tr, va))


def _probe_result(
    kind: str, o: LinearOptions | KnnOptions, src: Source, summary: dict, res: dict, intervals: dict, pre: dict | None
) -> dict:
    """Write a linear or kNN result as eval/<kind>-<val split>-<setting id>.json, with its settings, bootstrap
    intervals and the command that reproduces it."""
    settings = {**res["settings"], "bootstrap": bootstrap_settings(o.n_boot, o.ci, o.seed)}
    sid = setting_id(src, result_args(o))
    ctx = _context(
        src, o.shards, train_split=o.train_split, val_split=o.val_split, settings=settings, preprocess=pre,
        intervals=intervals, setting_id=sid, command=result_command(kind, o),
    )  # fmt: skip
    return _finish(make_doc(kind, summary, res, ctx), src.home, f"{kind}-{o.val_split}-{sid}", o.out, o.quiet)


def _load_scores(path: str | os.PathLike) -> np.ndarray:
    """Per-sample scores from .npy, .npz (array `scores` or the only array) or text (one number a line)."""
    p = Path(path)
    try:
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False).reshape(-1).astype(np.float64)
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                name = "scores" if "scores" in z else (z.files[0] if len(z.files) == 1 else None)
                if name is None:
                    raise ValueError(f"holds {z.files}; expected one array or one named `scores`")
                return np.asarray(z[name], np.float64).reshape(-1)
        return np.loadtxt(p, dtype=np.float64).reshape(-1)
    except FileNotFoundError:
        raise GenaugError(f"score file {p} does not exist") from None
    except (OSError, ValueError) as e:
        raise GenaugError(f"score file {p} is unreadable ({e}): give .npy, .npz or one number per line") from None


def eval_ood(o: OodOptions, builder: Builder | None = None) -> dict:
    """AUROC, AUPR-in/out and FPR@95 of each applicable score, for in-distribution `in_set` vs each out set
    (eval/ood-<split>-<out sets>-<setting id>.json)."""
    from genaug.evaluate.linear import ProbeConfig, train_probe
    from genaug.evaluate.ood import Score, evaluate_scores, feature_scores

    if not (o.model or o.train_features):
        raise GenaugError("give a model (run folder, backbone.safetensors, checkpoint) or --train-features")
    n_out = len(o.out_sets) or len(o.out_features)
    if n_out == 0:
        raise GenaugError("give at least one --out shard set (or --out-features file)")
    if o.uncertainty_out and len(o.uncertainty_out) != n_out:
        raise GenaugError(f"--uncertainty-out was given {len(o.uncertainty_out)} times for {n_out} out sets")
    needed = [(o.in_set, o.train_split, o.train_features), (o.in_set, o.split, o.in_features)] + [
        (s, o.split, None) for s in o.out_sets
    ]
    for shards, split_, given in needed:  # every set exists (a URL: is reachable) before the model is loaded
        if shards is not None and given is None:
            split_folder(shards, split_)
    src = open_source(o.model or o.train_features, builder)
    higher_is_in = o.uncertainty_higher_is_in
    if higher_is_in is None:  # the method says which way its score points (SimVAE: lower is in)
        module = src.encoder.module if src.encoder is not None else None
        higher_is_in = bool(getattr(module, "uncertainty_high_is_in_distribution", True))
    tr = get_features(src, o.in_set, o.train_split, o, features_file=o.train_features)
    fin = get_features(src, o.in_set, o.split, o, features_file=o.in_features)
    outs = [
        (name, get_features(src, shards, o.split, o, features_file=ff))
        for name, shards, ff in (
            [(Path(s).name, s, None) for s in o.out_sets] or [(Path(f).stem, None, f) for f in o.out_features]
        )
    ]
    which = tuple(s for s in o.scores if s in ("msp", "mahalanobis", "knn"))
    probe = None
    if "msp" in which:
        cfg = ProbeConfig(solver="ridge" if o.fast else "sgd", epochs=o.probe_epochs, device=o.device)
        probe = train_probe(tr.features, tr.labels, None, cfg)
    details, summary = {}, {}
    for i, (name, fo) in enumerate(outs):
        sc = feature_scores(tr.features, tr.labels, fin.features, fo.features, probe, o.knn_k, which, o.device)
        if "uncertainty" in o.scores:
            u_in = _load_scores(o.uncertainty_in) if o.uncertainty_in else fin.extras.get("uncertainty")
            u_out = _load_scores(o.uncertainty_out[i]) if o.uncertainty_out else fo.extras.get("uncertainty")
            if u_in is not None and u_out is not None:
                sc.append(Score("uncertainty", u_in, u_out, higher_is_in))
        res = evaluate_scores(sc)
        details[name] = res
        for sname, m in res.items():
            summary |= {f"ood/{name}/{sname}/{k}": m[k] for k in ("auroc", "aupr_in", "aupr_out", "fpr95")}
    settings = {
        "scores": list(o.scores),
        "knn_k": o.knn_k,
        "probe": "ridge" if o.fast else f"sgd {o.probe_epochs} ep",
        "uncertainty_higher_is_in": higher_is_in,
        "positive": "in-distribution",
    }
    ctx = _context(
        src, o.in_set, split=o.split, train_split=o.train_split, out_sets=[n for n, _ in outs], settings=settings,
        preprocess=_pre(tr, fin),
    )  # fmt: skip
    tag = "-".join(n for n, _ in outs)
    sid = ctx["setting_id"] = setting_id(src, result_args(o))
    return _finish(make_doc("ood", summary, details, ctx), src.home, f"ood-{o.split}-{tag}-{sid}", o.out, o.quiet)


def eval_similarity(o: SimilarityOptions, builder: Builder | None = None) -> dict:
    """Linear CKA and orthogonal Procrustes distance between two encoders on the same images, with bootstrap CIs
    (eval/similarity-<split>-<other>-<setting id>.json)."""
    from genaug.evaluate.similarity import compare

    if o.shards is not None:  # the split exists (a URL: is reachable) before the models are loaded
        split_folder(o.shards, o.split)
    sa, sb = open_source(o.a, builder), open_source(o.b, builder)
    fa, fb = get_features(sa, o.shards, o.split, o), get_features(sb, o.shards, o.split, o)
    common = [k for k in fa.keys if k in set(fb.keys)]
    if len(common) < 2:
        raise GenaugError(f"{o.a} and {o.b} share {len(common)} images: compare features of the same split")
    res = compare(fa.subset(common).features, fb.subset(common).features, o.n_boot, o.ci, o.seed)
    summary = {f"sim/{sb.label}/cka": res["cka"]["value"], f"sim/{sb.label}/opd": res["opd"]["value"]}
    settings = {"n_boot": o.n_boot, "ci": o.ci, "seed": o.seed, "centred": True, "opd": "Ding et al. 2021, in [0, 2]"}
    other = sb.encoder.encoder_id if sb.encoder is not None else str(sb.path)
    sid = setting_id(sa, {**result_args(o), "b": other})
    ctx = _context(sa, o.shards, split=o.split, other=str(sb.path), settings=settings, setting_id=sid)
    name = f"similarity-{o.split}-{sb.label}-{sid}"
    return _finish(make_doc("similarity", summary, res, ctx), sa.home, name, o.out, o.quiet)


def eval_report(o: ReportOptions) -> tuple[str, list[dict]]:
    """Table (and PNG bar chart) comparing the evaluation results of runs."""
    from genaug.evaluate.report import report

    text, rows = report(list(o.runs), Path(o.png) if o.png else None, list(o.metrics) or None)
    if not o.quiet:
        print(text)
        if o.png:
            print(f"chart: {o.png}")
    return text, rows
