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

import typing
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from genaug.core.config import Number, Probability, check_value

#: the types of the mixing settings: declared once, checked by the recipe (genaug.train.recipe) and here alike
MixViews = Literal["each", "second"]
Weighting = Literal["uniform", "score"]
Cosine = Annotated[Number, Field(ge=-1.0, le=1.0)]
MIX_VIEWS: tuple[str, ...] = typing.get_args(MixViews)
WEIGHTINGS: tuple[str, ...] = typing.get_args(Weighting)


@dataclass(frozen=True)
class MixPolicy:
    """Probability p of replacing a view and which views may be replaced."""

    p: float = 0.0
    mix_views: str = "each"
    min_score: float | None = None
    weighting: str = "uniform"

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", check_value(Probability, self.p, "--p"))
        check_value(MixViews, self.mix_views, "--mix-views")
        if self.min_score is not None:
            object.__setattr__(self, "min_score", check_value(Cosine, self.min_score, "--gen-min-score"))
        check_value(Weighting, self.weighting, "--gen-weighting")

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
