"""The `genaug eval` commands as Python functions with the CLI's arguments: features in, JSON results out."""

from __future__ import annotations

import inspect
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genaug.core.errors import GenaugError
from genaug.core.hashing import stable_hash
from genaug.evaluate.bootstrap import DEFAULT_BOOT, DEFAULT_CI, accuracy_interval, bootstrap_settings
from genaug.evaluate.encoders import Builder, LoadedEncoder, load_encoder
from genaug.evaluate.features import FeatureSet, Preprocess, cached_features, split_folder
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
    src: Source,
    shards: str | None,
    split: str,
    image_size: int | None = None,
    batch_size: int = 256,
    workers: int = 0,
    device: str | None = None,
    limit: int | None = None,
    features_file: str | os.PathLike | None = None,
) -> FeatureSet:
    """Features of `split`: from a given .npz, or extracted with the source's encoder (cached next to it)."""
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
    pre = None
    if image_size:  # a flag changes the eval size; a run keeps its own resize ratio and normalisation
        views = (enc.recipe or {}).get("views") if enc.recipe and "method" in enc.recipe else None
        pre = Preprocess.from_views(views, image_size) if views is not None else Preprocess(image_size=image_size)
    return cached_features(
        enc.module,
        enc.encoder_id,
        folder,
        enc.home / "features",
        pre,
        limit=limit,
        batch_size=batch_size,
        device=device,
        num_workers=workers,
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


def _train_val_features(model, builder, shards, train_split, val_split, train_features, val_features, kw: dict):
    """The encoder source and the features of the train and val splits (extracted and cached, or given files)."""
    if not (model or train_features):
        raise GenaugError(
            "give a model (run folder, backbone.safetensors, checkpoint) or --train-features/--val-features"
        )
    if shards is not None:  # both splits exist (a URL: reachable) before the model is loaded
        for split, given in ((train_split, train_features), (val_split, val_features)):
            if given is None:
                split_folder(shards, split)
    src = open_source(model or train_features, builder)
    tr = get_features(src, shards, train_split, features_file=train_features, **kw)
    va = get_features(src, shards, val_split, features_file=val_features, **kw)
    return src, tr, va


# the CLI flag of each argument that changes a linear or kNN result (the command printed with a result uses them)
RESULT_FLAGS = {
    "shards": "--shards", "train_split": "--train-split", "val_split": "--val-split",
    "train_features": "--train-features", "val_features": "--val-features", "solver": "--solver",
    "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "weight_decay": "--weight-decay",
    "batchnorm": "--batchnorm", "fast": "--fast", "seed": "--seed", "ks": "--k", "temperature": "--temperature",
    "image_size": "--image-size", "limit": "--limit", "n_boot": "--boot", "ci": "--ci",
}  # fmt: skip


def result_command(kind: str, func, model: str | None, args: dict) -> str:
    """The `genaug eval KIND ...` command that reproduces a result: the model and every result-changing argument
    that differs from the command's default (--shards always), quoted for a POSIX shell."""
    defaults = {n: p.default for n, p in inspect.signature(func).parameters.items()}
    words = ["genaug", "eval", kind] + ([str(model)] if model else [])
    for name, flag in RESULT_FLAGS.items():
        if name not in args:
            continue
        value = args[name]
        default = defaults.get(name)
        if value is None or (name != "shards" and _same(value, default)):
            continue
        if isinstance(value, bool):
            words += [flag] if value else []
        elif isinstance(value, (list, tuple)):
            for v in value:
                words += [flag, str(v)]
        else:
            words += [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


def _same(value, default) -> bool:
    if isinstance(value, (list, tuple)) or isinstance(default, (list, tuple)):
        return list(value or []) == list(default or [])
    return value == default


# arguments that change how a result is computed, not what it is
NOT_RESULT = ("extract_batch_size", "workers", "device", "out", "quiet", "builder", "model", "a")  # model: encoder id


def setting_id(src: Source, args: dict) -> str:
    """A short hash of what a result depends on (the weights, the data and every result-changing argument): the
    result file's name carries it, so results of other settings never overwrite each other."""
    key = {}
    for name, value in args.items():
        if name in NOT_RESULT:
            continue
        if isinstance(value, (str, os.PathLike)) and not is_url(str(value)) and Path(value).exists():
            value = str(Path(value).resolve())  # a relative and an absolute path to one set are one setting
        key[name] = list(value) if isinstance(value, (list, tuple)) else value
    key["encoder"] = src.encoder.encoder_id if src.encoder is not None else str(src.path.resolve())
    return stable_hash(key)[:10]


def _intervals(hits: dict[str, np.ndarray], n_boot: int, ci: float, seed: int) -> dict[str, list[float] | None]:
    """{metric: [low, high]} bootstrap intervals over test images of per-image hits {metric: array}."""
    return {name: accuracy_interval(h, n_boot, ci, seed) for name, h in hits.items()}


def eval_linear(
    model: str | None = None,
    shards: str | None = None,
    train_split: str = "train",
    val_split: str = "val",
    train_features: str | None = None,
    val_features: str | None = None,
    solver: str = "sgd",
    epochs: int = 100,
    batch_size: int = 256,
    lr: float | None = None,
    weight_decay: float = 0.0,
    batchnorm: bool = False,
    fast: bool = False,
    seed: int = 0,
    image_size: int | None = None,
    extract_batch_size: int = 256,
    workers: int = 0,
    device: str | None = None,
    limit: int | None = None,
    out: str | None = None,
    quiet: bool = False,
    builder: Builder | None = None,
    n_boot: int = DEFAULT_BOOT,
    ci: float = DEFAULT_CI,
) -> dict:
    """Linear probe on frozen features: top-1/top-5 on the val split with bootstrap intervals over val images,
    written as eval/linear-<split>-<setting id>.json next to the model, with the command that reproduces it."""
    args = dict(locals())
    from genaug.evaluate.linear import ProbeConfig, linear_probe

    src, tr, va = _train_val_features(
        model, builder, shards, train_split, val_split, train_features, val_features,
        dict(image_size=image_size, batch_size=extract_batch_size, workers=workers, device=device, limit=limit),
    )  # fmt: skip
    cfg = ProbeConfig(
        solver="ridge" if fast else solver,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        batchnorm=batchnorm,
        seed=seed,
        device=device,
    )
    res, _ = linear_probe(tr.features, tr.labels, va.features, va.labels, cfg)
    hits = res.pop("hits")
    summary = {"linear/top1": res["top1"], "linear/top5": res["top5"]}
    intervals = _intervals({f"linear/{m}": h for m, h in hits.items()}, n_boot, ci, seed)
    settings = {**res["settings"], "bootstrap": bootstrap_settings(n_boot, ci, seed)}
    sid = setting_id(src, args)
    ctx = _context(
        src, shards, train_split=train_split, val_split=val_split, settings=settings, preprocess=_pre(tr, va),
        intervals=intervals, setting_id=sid, command=result_command("linear", eval_linear, model, args),
    )  # fmt: skip
    return _finish(make_doc("linear", summary, res, ctx), src.home, f"linear-{val_split}-{sid}", out, quiet)


def eval_knn(
    model: str | None = None,
    shards: str | None = None,
    train_split: str = "train",
    val_split: str = "val",
    train_features: str | None = None,
    val_features: str | None = None,
    ks: Sequence[int] = (20, 200),
    temperature: float = 0.07,
    image_size: int | None = None,
    extract_batch_size: int = 256,
    workers: int = 0,
    device: str | None = None,
    limit: int | None = None,
    out: str | None = None,
    quiet: bool = False,
    builder: Builder | None = None,
    n_boot: int = DEFAULT_BOOT,
    ci: float = DEFAULT_CI,
    seed: int = 0,
) -> dict:
    """Weighted kNN (cosine, exp(sim/T)) for each k: top-1/top-5 on the val split with bootstrap intervals over val
    images (seeded by `seed`), written as eval/knn-<split>-<setting id>.json with the command that reproduces it."""
    args = dict(locals())
    from genaug.evaluate.knn import knn_classify

    src, tr, va = _train_val_features(
        model, builder, shards, train_split, val_split, train_features, val_features,
        dict(image_size=image_size, batch_size=extract_batch_size, workers=workers, device=device, limit=limit),
    )  # fmt: skip
    res = knn_classify(tr.features, tr.labels, va.features, va.labels, tuple(ks), temperature, device=device)
    hits = res.pop("hits")
    summary = {f"knn/{k}/top1": v["top1"] for k, v in res["results"].items()}
    summary |= {f"knn/{k}/top5": v["top5"] for k, v in res["results"].items()}
    intervals = _intervals({f"knn/{k}/{m}": h for k, d in hits.items() for m, h in d.items()}, n_boot, ci, seed)
    settings = {**res["settings"], "bootstrap": bootstrap_settings(n_boot, ci, seed)}
    sid = setting_id(src, args)
    ctx = _context(
        src, shards, train_split=train_split, val_split=val_split, settings=settings, preprocess=_pre(tr, va),
        intervals=intervals, setting_id=sid, command=result_command("knn", eval_knn, model, args),
    )  # fmt: skip
    return _finish(make_doc("knn", summary, res, ctx), src.home, f"knn-{val_split}-{sid}", out, quiet)


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


def eval_ood(
    model: str | None = None,
    in_set: str | None = None,
    out_sets: Sequence[str] = (),
    split: str = "val",
    train_split: str = "train",
    train_features: str | None = None,
    in_features: str | None = None,
    out_features: Sequence[str] = (),
    scores: Sequence[str] = ("msp", "mahalanobis", "knn", "uncertainty"),
    knn_k: int = 50,
    uncertainty_in: str | None = None,
    uncertainty_out: Sequence[str] = (),
    uncertainty_higher_is_in: bool | None = None,
    probe_epochs: int = 100,
    fast: bool = False,
    image_size: int | None = None,
    extract_batch_size: int = 256,
    workers: int = 0,
    device: str | None = None,
    limit: int | None = None,
    out: str | None = None,
    quiet: bool = False,
    builder: Builder | None = None,
) -> dict:
    """AUROC, AUPR-in/out and FPR@95 of each applicable score, for in-distribution `in_set` vs each out set
    (eval/ood-<split>-<out sets>-<setting id>.json)."""
    args = dict(locals())
    from genaug.evaluate.linear import ProbeConfig, train_probe
    from genaug.evaluate.ood import Score, evaluate_scores, feature_scores

    if not (model or train_features):
        raise GenaugError("give a model (run folder, backbone.safetensors, checkpoint) or --train-features")
    n_out = len(out_sets) or len(out_features)
    if n_out == 0:
        raise GenaugError("give at least one --out shard set (or --out-features file)")
    if uncertainty_out and len(uncertainty_out) != n_out:
        raise GenaugError(f"--uncertainty-out was given {len(uncertainty_out)} times for {n_out} out sets")
    needed = [(in_set, train_split, train_features), (in_set, split, in_features)] + [
        (s, split, None) for s in out_sets
    ]
    for shards, split_, given in needed:  # every set exists (a URL: is reachable) before the model is loaded
        if shards is not None and given is None:
            split_folder(shards, split_)
    src = open_source(model or train_features, builder)
    if uncertainty_higher_is_in is None:  # the method says which way its score points (SimVAE: lower is in)
        module = src.encoder.module if src.encoder is not None else None
        uncertainty_higher_is_in = bool(getattr(module, "uncertainty_high_is_in_distribution", True))
    kw = dict(image_size=image_size, batch_size=extract_batch_size, workers=workers, device=device, limit=limit)
    tr = get_features(src, in_set, train_split, features_file=train_features, **kw)
    fin = get_features(src, in_set, split, features_file=in_features, **kw)
    outs = [
        (name, get_features(src, shards, split, features_file=ff, **kw))
        for name, shards, ff in (
            [(Path(s).name, s, None) for s in out_sets] or [(Path(f).stem, None, f) for f in out_features]
        )
    ]
    which = tuple(s for s in scores if s in ("msp", "mahalanobis", "knn"))
    probe = None
    if "msp" in which:
        cfg = ProbeConfig(solver="ridge" if fast else "sgd", epochs=probe_epochs, device=device)
        probe = train_probe(tr.features, tr.labels, None, cfg)
    details, summary = {}, {}
    for i, (name, fo) in enumerate(outs):
        sc = feature_scores(tr.features, tr.labels, fin.features, fo.features, probe, knn_k, which, device)
        if "uncertainty" in scores:
            u_in = _load_scores(uncertainty_in) if uncertainty_in else fin.extras.get("uncertainty")
            u_out = _load_scores(uncertainty_out[i]) if uncertainty_out else fo.extras.get("uncertainty")
            if u_in is not None and u_out is not None:
                sc.append(Score("uncertainty", u_in, u_out, uncertainty_higher_is_in))
        res = evaluate_scores(sc)
        details[name] = res
        for sname, m in res.items():
            summary |= {f"ood/{name}/{sname}/{k}": m[k] for k in ("auroc", "aupr_in", "aupr_out", "fpr95")}
    settings = {
        "scores": [s for s in scores],
        "knn_k": knn_k,
        "probe": "ridge" if fast else f"sgd {probe_epochs} ep",
        "uncertainty_higher_is_in": uncertainty_higher_is_in,
        "positive": "in-distribution",
    }
    ctx = _context(
        src, in_set, split=split, train_split=train_split, out_sets=[n for n, _ in outs], settings=settings,
        preprocess=_pre(tr, fin),
    )  # fmt: skip
    tag = "-".join(n for n, _ in outs)
    sid = ctx["setting_id"] = setting_id(src, args)
    return _finish(make_doc("ood", summary, details, ctx), src.home, f"ood-{split}-{tag}-{sid}", out, quiet)


def eval_similarity(
    a: str,
    b: str,
    shards: str | None = None,
    split: str = "val",
    n_boot: int = 200,
    ci: float = 0.95,
    seed: int = 0,
    image_size: int | None = None,
    extract_batch_size: int = 256,
    workers: int = 0,
    device: str | None = None,
    limit: int | None = None,
    out: str | None = None,
    quiet: bool = False,
    builder: Builder | None = None,
) -> dict:
    """Linear CKA and orthogonal Procrustes distance between two encoders on the same images, with bootstrap CIs
    (eval/similarity-<split>-<other>-<setting id>.json)."""
    args = dict(locals())
    from genaug.evaluate.similarity import compare

    if shards is not None:  # the split exists (a URL: is reachable) before the models are loaded
        split_folder(shards, split)
    sa, sb = open_source(a, builder), open_source(b, builder)
    kw = dict(image_size=image_size, batch_size=extract_batch_size, workers=workers, device=device, limit=limit)
    fa, fb = get_features(sa, shards, split, **kw), get_features(sb, shards, split, **kw)
    common = [k for k in fa.keys if k in set(fb.keys)]
    if len(common) < 2:
        raise GenaugError(f"{a} and {b} share {len(common)} images: compare features of the same split")
    res = compare(fa.subset(common).features, fb.subset(common).features, n_boot, ci, seed)
    summary = {f"sim/{sb.label}/cka": res["cka"]["value"], f"sim/{sb.label}/opd": res["opd"]["value"]}
    settings = {"n_boot": n_boot, "ci": ci, "seed": seed, "centred": True, "opd": "Ding et al. 2021, in [0, 2]"}
    sid = setting_id(sa, {**args, "b": sb.encoder.encoder_id if sb.encoder is not None else str(sb.path)})
    ctx = _context(sa, shards, split=split, other=str(sb.path), settings=settings, setting_id=sid)
    name = f"similarity-{split}-{sb.label}-{sid}"
    return _finish(make_doc("similarity", summary, res, ctx), sa.home, name, out, quiet)


def eval_report(
    runs: Sequence[str], png: str | None = None, metrics: Sequence[str] | None = None, quiet: bool = False
) -> tuple[str, list[dict]]:
    """Table (and PNG bar chart) comparing the evaluation results of runs."""
    from genaug.evaluate.report import report

    text, rows = report(list(runs), Path(png) if png else None, list(metrics) if metrics else None)
    if not quiet:
        print(text)
        if png:
            print(f"chart: {png}")
    return text, rows
