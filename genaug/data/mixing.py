"""Mixing: which views of a sample are replaced by a generated variant, and by which one.

For each view allowed to change (`each`: every view; `second`: view 1 only, as in the paper's code), the source
image is replaced with probability p by a variant drawn uniformly over all variants of all generated columns that
the sample has (a sample whose generation failed has none and always keeps its source). Every sample consumes
exactly 2 x n_views uniforms from the stream's RNG, whatever p and the variants are, so the RNG position depends
only on how many samples were read: that makes replay (resume) exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from genaug.core.errors import GenaugError

MIX_VIEWS = ("each", "second")


@dataclass(frozen=True)
class MixPolicy:
    """Probability p of replacing a view and which views may be replaced."""

    p: float = 0.0
    mix_views: str = "each"

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.p) <= 1.0:
            raise GenaugError(f"--p must lie in [0, 1], got {self.p}")
        if self.mix_views not in MIX_VIEWS:
            raise GenaugError(f"--mix-views must be one of {', '.join(MIX_VIEWS)}, got {self.mix_views!r}")

    def allowed(self, view: int) -> bool:
        """Whether view number `view` may be replaced."""
        return self.mix_views == "each" or view == 1

    def decide(self, uniforms, n_views: int, n_variants: int) -> list[int]:
        """Image of each view from 2*n_views uniforms: 0 = source, 1 + j = variant j of the sample's variants."""
        out = []
        for v in range(n_views):
            if n_variants and self.allowed(v) and uniforms[v] < self.p:
                out.append(1 + min(int(uniforms[n_views + v] * n_variants), n_variants - 1))
            else:
                out.append(0)
        return out
