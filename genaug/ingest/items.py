"""What a scanned source is made of: its items (one image each) and the Source that lists them.

Kept apart from `sources` (which picks the scanner for a layout) so that a scanner in its own module (`hf`) and the
dispatcher both import these without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SourceItem:
    """One source image: where it is (a file, or a member of a tar), its label and class name when known."""

    ref: str
    label: int | None = None
    class_name: str | None = None
    tar: str | None = None
    member: str | None = None
    offset: int | None = None  # header offset of `member` in `tar` (names may repeat inside a tar)
    error: str | None = None  # set when the item is known bad at scan time: it becomes a recorded failure
    text_member: str | None = None  # the sample's `.txt` caption in `tar` (kept as the shard field `txt`)
    text_offset: int | None = None
    row: int | None = None  # the row of a Hugging Face dataset (layout hf)

    def as_plan(self) -> list:
        """A JSON-friendly tuple for the plan hash."""
        return [self.ref, self.label, self.member] + ([self.error] if self.error else [])


@dataclass
class Source:
    """An enumerated source: its layout, the class list (or None) and the items in a stable order.

    `identity` holds what else defines the plan (a label key, a dataset's columns); it enters the plan hash only
    when not empty, so the plans of sources that have none hash as before. `read_rows` fetches the image bytes of
    rows of a Hugging Face dataset: (bytes, None, None), (None, file path, None) or (None, None, error) per row.
    """

    layout: str
    root: Path
    classes: list[str] | None
    items: Sequence[SourceItem]
    skipped: list[dict]
    identity: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # written into the manifest (label key, dataset columns, ...)
    read_rows: Callable[[list[int]], list[tuple[bytes | None, str | None, str | None]]] | None = None
