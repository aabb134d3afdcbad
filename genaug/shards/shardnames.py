"""One validator for the shard names a manifest lists: NNNNNN.tar, each once, as many as the manifest says.

A manifest is a file a user may have been handed (or that a host serves): its `shards` list is used to build paths
(`folder / name`) and indices (`int(name[:6])`). Every reader goes through `check_shard_names` (read_manifest calls
it), so a name such as `../../etc/passwd` or `000000/../../x.tar` is refused with one line before any path is built.
"""

from __future__ import annotations

import math

from genaug.core.errors import GenaugError
from genaug.shards.layout import SHARD_RE

#: what a damaged manifest's error tells the user to do when no runnable command is known
RERUN = "rerun the stage that wrote it"


def shard_index(name: object, where: object = "manifest.json", fix: str = RERUN) -> int:
    """The index of shard file name `name` (NNNNNN.tar), or a GenaugError naming `where` and ending in `fix`."""
    m = SHARD_RE.match(name) if isinstance(name, str) else None
    if m is None:
        raise GenaugError(
            f"{where} lists {str(name)[:80]!r}, not a shard name NNNNNN.tar (six digits, no folders): the manifest is "
            f"damaged or not genaug's; {fix}"
        )
    return int(m.group(1))


def _as_count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def check_shard_names(doc: dict, where: object, fix: str = RERUN) -> list[str]:
    """The `shards` list of manifest `doc`, checked: names NNNNNN.tar, each once, agreeing with its counts; an error
    ends in `fix` (what to do)."""
    names = doc.get("shards")
    if names is None:
        return []
    if not isinstance(names, list):
        raise GenaugError(
            f"{where}: `shards` must be a list of NNNNNN.tar names, got {type(names).__name__}: damaged, {fix}"
        )
    seen: set[int] = set()
    for name in names:
        i = shard_index(name, where, fix)
        if i in seen:
            raise GenaugError(f"{where} lists shard {name} twice: damaged, {fix}")
        seen.add(i)
    num = _as_count(doc.get("num_shards"))
    if num is not None and num != len(names):
        raise GenaugError(
            f"{where} lists {len(names)} shards but says num_shards {num}: the manifest is damaged or was edited; {fix}"
        )
    planned, per = _as_count(doc.get("num_planned")), _as_count(doc.get("samples_per_shard"))
    if doc.get("kind", "source") == "source" and planned is not None and per:
        expect = math.ceil(planned / per)
        if expect != len(names):
            raise GenaugError(
                f"{where} lists {len(names)} shards, but {planned} samples at {per} per shard make {expect}: the "
                f"manifest is damaged or was edited; {fix}"
            )
    return names
