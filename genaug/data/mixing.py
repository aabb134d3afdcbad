"""Mixing: which views of a sample are replaced by a generated variant, and by which one.

For each view allowed to change (`each`: every view; `second`: view 1 only, as in the paper's code), the source
image is replaced with probability p by a variant drawn uniformly over all variants of all generated columns that
the sample has (a sample whose generation failed has none and always keeps its source). Every sample consumes
exactly 2 x n_views uniforms from the stream's RNG, whatever p and the variants are, so the RNG position depends
only on how many samples were read: that makes replay (resume) exact.

Fidelity (docs/fidelity.md): with `min_score` X only variants whose score is at least X can be drawn (a sample
with none left keeps its source); with weighting `score` variant j is drawn with probability proportional to its
score (negative scores count as 0; all 0 means uniform). Both use the same uniform as the uniform draw, by inverse
CDF, so the number of draws per sample does not change.
"""

from __future__ import annotations

from dataclasses import dataclass

from genaug.core.errors import GenaugError

MIX_VIEWS = ("each", "second")
WEIGHTINGS = ("uniform", "score")


@dataclass(frozen=True)
class MixPolicy:
    """Probability p of replacing a view and which views may be replaced."""

    p: float = 0.0
    mix_views: str = "each"
    min_score: float | None = None
    weighting: str = "uniform"

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.p) <= 1.0:
            raise GenaugError(f"--p must lie in [0, 1], got {self.p}")
        if self.mix_views not in MIX_VIEWS:
            raise GenaugError(f"--mix-views must be one of {', '.join(MIX_VIEWS)}, got {self.mix_views!r}")
        if self.min_score is not None and not -1.0 <= float(self.min_score) <= 1.0:
            raise GenaugError(f"--gen-min-score must lie in [-1, 1] (a cosine similarity), got {self.min_score}")
        if self.weighting not in WEIGHTINGS:
            raise GenaugError(f"--gen-weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")

    @property
    def needs_scores(self) -> bool:
        """Whether drawing a variant needs its fidelity score."""
        return self.min_score is not None or self.weighting == "score"

    def usable(self, n_variants: int, scores=None) -> list[int]:
        """Indices of the variants that may be drawn (all, or those scoring at least min_score)."""
        if self.min_score is None:
            return list(range(n_variants))
        scores = scores or [None] * n_variants
        return [j for j in range(n_variants) if scores[j] is not None and scores[j] >= self.min_score]

    def pick(self, u: float, usable: list[int], scores=None) -> int:
        """The variant drawn by uniform u among `usable`: uniformly, or in proportion to the scores."""
        n = len(usable)
        if self.weighting == "score" and scores:
            w = [max(0.0, float(scores[j] or 0.0)) for j in usable]
            total = sum(w)
            if total > 0:
                acc, target = 0.0, u * total
                for j, wj in zip(usable, w, strict=True):
                    acc += wj
                    if target < acc:
                        return j
                return next(j for j, wj in zip(reversed(usable), reversed(w), strict=True) if wj > 0)
        return usable[min(int(u * n), n - 1)]

    def allowed(self, view: int) -> bool:
        """Whether view number `view` may be replaced."""
        return self.mix_views == "each" or view == 1

    def decide(self, uniforms, n_views: int, n_variants: int, scores=None) -> list[int]:
        """Image of each view from 2*n_views uniforms: 0 = source, 1 + j = variant j of the sample's variants."""
        usable = self.usable(n_variants, scores)
        out = []
        for v in range(n_views):
            if usable and self.allowed(v) and uniforms[v] < self.p:
                out.append(1 + self.pick(float(uniforms[n_views + v]), usable, scores))
            else:
                out.append(0)
        return out
