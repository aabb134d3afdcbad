"""Benchmark of the evaluation kernels against scikit-learn on the same inputs (prints baseline, genaug, ratio).

- weighted kNN (k=20/200, T=0.07, cosine) vs sklearn NearestNeighbors(brute, cosine) + the same weighted vote
- AUROC/AUPR/FPR@95 vs sklearn roc_auc_score + average_precision_score + roc_curve
- closed-form ridge probe (--fast) vs sklearn RidgeClassifier (same estimator), accuracy and time

Usage: OMP_NUM_THREADS=2 python scripts/bench_eval.py [--n 20000] [--d 512] [--classes 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def timed(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000, help="training features")
    ap.add_argument("--nval", type=int, default=5000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--noise", type=float, default=6.0, help="within-class std (higher = harder)")
    a = ap.parse_args()

    import torch
    from sklearn.linear_model import RidgeClassifier
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
    from sklearn.neighbors import NearestNeighbors

    from genaug.evaluate.knn import knn_classify
    from genaug.evaluate.linear import ProbeConfig, linear_probe
    from genaug.evaluate.metrics import ood_metrics

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (a.classes, a.d))
    ytr, yva = rng.integers(0, a.classes, a.n), rng.integers(0, a.classes, a.nval)
    xtr = (centers[ytr] + rng.normal(0, a.noise, (a.n, a.d))).astype(np.float32)
    xva = (centers[yva] + rng.normal(0, a.noise, (a.nval, a.d))).astype(np.float32)
    print(f"features: train {a.n} x {a.d}, val {a.nval}, {a.classes} classes, torch threads {torch.get_num_threads()}")

    def sk_knn():
        nn = NearestNeighbors(n_neighbors=200, algorithm="brute", metric="cosine").fit(xtr)
        dist, idx = nn.kneighbors(xva)
        w = np.exp((1 - dist) / 0.07)
        res = {}
        for k in (20, 200):
            votes = np.zeros((a.nval, a.classes))
            np.add.at(votes, (np.arange(a.nval)[:, None], ytr[idx[:, :k]]), w[:, :k])
            res[k] = float((votes.argmax(1) == yva).mean())
        return res

    t_sk, r_sk = timed(sk_knn, 1)
    t_g, r_g = timed(lambda: knn_classify(xtr, ytr, xva, yva, device="cpu"), 1)
    print(
        f"kNN k=20/200   sklearn {t_sk:7.3f}s (top1 {r_sk[20]:.4f}/{r_sk[200]:.4f})   genaug {t_g:7.3f}s "
        f"(top1 {r_g['results']['k20']['top1']:.4f}/{r_g['results']['k200']['top1']:.4f})   ratio {t_sk / t_g:.1f}x"
    )

    s_in, s_out = rng.normal(1, 1, 200_000), rng.normal(0, 1, 200_000)
    y = np.r_[np.ones(s_in.size), np.zeros(s_out.size)]
    s = np.r_[s_in, s_out]

    def sk_ood():
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        return (
            roc_auc_score(y, s),
            average_precision_score(y, s),
            average_precision_score(1 - y, -s),
            fpr[np.argmax(tpr >= 0.95)],
        )

    t_sk, r_sk = timed(sk_ood)
    t_g, r_g = timed(lambda: ood_metrics(s_in, s_out))
    same = np.allclose(r_sk, [r_g["auroc"], r_g["aupr_in"], r_g["aupr_out"], r_g["fpr95"]], atol=1e-12)
    print(
        f"OOD metrics    sklearn {t_sk:7.3f}s   genaug {t_g:7.3f}s   ratio {t_sk / t_g:.1f}x   (equal: {same}, "
        f"2 x 200k scores)"
    )

    t_sk, rc = timed(lambda: RidgeClassifier(alpha=1.0).fit(xtr, ytr), 1)
    acc_sk = float((rc.predict(xva) == yva).mean())
    cfg = ProbeConfig(solver="ridge", device="cpu")
    t_g, (res, _) = timed(lambda: linear_probe(xtr, ytr, xva, yva, cfg), 1)
    print(
        f"ridge probe    sklearn {t_sk:7.3f}s (top1 {acc_sk:.4f})   genaug {t_g:7.3f}s (top1 {res['top1']:.4f})   "
        f"ratio {t_sk / t_g:.1f}x"
    )
    cfg = ProbeConfig(solver="sgd", epochs=20, device="cpu")
    t_g, (res, _) = timed(lambda: linear_probe(xtr, ytr, xva, yva, cfg), 1)
    print(f"sgd probe      genaug 20 epochs {t_g:7.3f}s (top1 {res['top1']:.4f}); no sklearn baseline")


if __name__ == "__main__":
    main()
