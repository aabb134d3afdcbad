"""What one `genaug train` invocation takes besides the recipe: where the run lives, how this session runs."""

from __future__ import annotations

from typing import ClassVar

from genaug.core.config import PathText, Settings, setting
from genaug.shards.options import storage_option_field


class TrainOptions(Settings):
    """Train an SSL model on a shard set, replacing views by generated variants with probability p (e.g. `genaug train
    --method barlow --p 0.5 --shards imagenet --gen sd`). Rerunning with the same --out resumes from its last
    checkpoint; `accelerate launch -m genaug train ...` or torchrun for several GPUs."""

    where: ClassVar[str] = "flag"

    method: str = setting("simclr", "Method recipe name (trainers/) or a YAML path.", flag="--method")
    out: PathText | None = setting(None, "Run directory (default runs/<method>-<timestamp>).", flag="--out")
    resume: PathText | None = setting(None, "Checkpoint file or run directory to resume from.", flag="--resume")
    image_size: int | None = setting(None, "Size of the global views (recipe key views.size).", "--image-size", ge=1)
    stop_after: int | None = setting(None, "Stop this session after N steps (resumable).", flag="--stop-after", ge=1)
    sets: list[str] = setting(factory=list, help="Recipe override section.key=value (repeatable).", flag="--set")
    probe: bool = setting(True, "The online linear probe (when the split has labels).", flag="--probe/--no-probe")
    progress_bar: bool = setting(True, "A progress bar (--quiet: none).", flag="--progress-bar/--quiet")
    allow_module: list[str] = setting(
        factory=list,
        help="Trust this plug-in method module named by the recipe's module: (repeatable).",
        flag="--allow-module",
    )
    storage_option: list[str] = storage_option_field()
