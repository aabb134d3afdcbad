"""What one `genaug score` takes, declared once: the flags of the command and the typed object genaug.score.run
receives; bounds are checked here."""

from __future__ import annotations

from typing import ClassVar

from pydantic import field_validator

from genaug.core.config import Settings, setting
from genaug.shards.options import SHARDS_HELP, storage_option_field

ENCODER_HELP = (
    "Feature space: clip, swav, or a path (CLIP image-encoder folder or SwAV checkpoint). "
    "Default: the column's generator's own (CLIP image embedding for sd/sd-unclip, SwAV for icgan)."
)


class ScoreOptions(Settings):
    """Write fidelity scores (cosine similarity of each variant to its source, diversity, blank and near-copy flags) of
    a generated column that has none, as an aligned side column shards/<set>/scores/<column>/<split>/; the generated
    shards are not rewritten. Rerun to resume. See docs/fidelity.md."""

    where: ClassVar[str] = "flag"

    shards: str = setting(..., SHARDS_HELP, "--shards")
    gen: str = setting(..., "Generated column to score.", "--gen")
    split: str = setting("train", "Split of the column.", "--split")
    encoder: str | None = setting(None, ENCODER_HELP, "--encoder")
    weights: str | None = setting(None, "Local model folder (as for `genaug generate`).", "--weights")
    device: str | None = setting(None, "Default: cuda when available, else cpu.", "--device")
    batch_size: int = setting(16, "Images per encoder forward.", "--batch-size", ge=1)
    overwrite: bool = setting(False, "Replace scores made with another encoder.", "--overwrite")
    no_progress: bool = setting(False, "No progress bar.", "--no-progress")
    storage_option: list[str] = storage_option_field()

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        from genaug.core.devices import check_device

        check_device(v)
        return v
