"""Manifests: the small JSON document naming a split or column of a shard set, with its format tag."""

from __future__ import annotations

import os

from genaug.core.errors import GenaugError
from genaug.shards.layout import ShardSet, ingest_command, is_unlisted, resolve_shard_set, status_command
from genaug.shards.shardnames import check_shard_names
from genaug.shards.storage import Location, as_location, read_json, write_json

FORMAT = "genaug-shards/1"


def read_manifest(folder: Location, check: bool = True) -> dict:
    """Read `folder/manifest.json` and check its format tag and (unless not `check`, for a stage about to rewrite
    it) its shard list; a damaged source manifest's error ends in the ingest command that repairs it."""
    path = as_location(folder) / "manifest.json"
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise GenaugError(f"{path} is not a genaug manifest (format {FORMAT} expected)")
    if check:
        cmd = ingest_command(path, doc)
        check_shard_names(doc, path, *([f"rerun {cmd}"] if cmd else []))
    return doc


def write_manifest(folder: Location, doc: dict) -> None:
    """Write `folder/manifest.json` atomically, adding the format tag."""
    doc = dict(doc)
    doc["format"] = FORMAT
    write_json(as_location(folder) / "manifest.json", doc)


def open_split(shards: str | os.PathLike, split: str) -> tuple[ShardSet, Location, dict]:
    """The shard set, the source folder of `split` and its manifest; a missing split names those that exist."""
    unlisted = is_unlisted(resolve_shard_set(shards))
    ss = ShardSet.open(shards, must_exist=not unlisted)  # an unlisted (https) set is known by the split's manifest
    src = ss.split_dir(split)
    if unlisted and not (src / "manifest.json").is_file():
        raise GenaugError(
            f"shard set {ss.root} has no split {split!r}: {src}/manifest.json is not there: check the URL and "
            "--split (an https:// set is read-only: ingest to a path, s3:// or gs://, then publish that folder)"
        )
    if not (src / "manifest.json").is_file():
        have = ", ".join(ss.splits()) or "none"
        raise GenaugError(
            f"shard set {ss.root} has no split {split!r} (splits: {have}): pass --split or ingest it "
            f"(`genaug ingest SOURCE --shards {shards} --split {split}`)"
        )
    return ss, src, read_manifest(src)


def open_gen_split(
    ss: ShardSet, gen: str, split: str, shards: str | os.PathLike | None = None
) -> tuple[Location, dict]:
    """The folder of generated column `gen` for `split` and its manifest; a missing one names the fix."""
    col = ss.gen_dir(gen, split)
    if not (col / "manifest.json").is_file():
        import shlex

        from genaug.core.recipes import available

        have = ", ".join(ss.columns()) or ("not listed on a read-only host" if is_unlisted(ss.root) else "none")
        where = shlex.quote(str(shards or ss.root))
        # a shipped recipe's column is named after it; any other column comes from the user's recipe and --column
        model = f"--model {gen}" if gen in available("pipelines") else f"--model RECIPE --column {shlex.quote(gen)}"
        raise GenaugError(
            f"generated column {gen!r} has no split {split!r} in {ss.root} (columns: {have}): run "
            f"`genaug generate {model} --shards {where} --split {split}` first or fix --gen"
        )
    man = read_manifest(col)
    if man.get("update") is not None:
        raise GenaugError(
            f"generated column {gen!r} ({col}) is being updated to a new recipe by generate --update: rerun that "
            f"command until it finishes (it resumes; {status_command(col)} shows what is left), then use the column"
        )
    src = ss.split_dir(split)
    check_column_source(col, man, src, read_manifest(src))
    return col, man


class ForeignColumn(GenaugError):
    """A generated (or score) column made from another image set than the split it sits beside."""


def column_source_problem(col: Location, col_man: dict, src: Location, src_man: dict) -> str | None:
    """Why column `col` does not belong to source split `src` (its source_plan_hash is not the split's plan_hash)."""
    want = col_man.get("source_plan_hash")
    have = src_man.get("plan_hash")
    if want is None or want == have:  # columns written before the hash was recorded carry none: keys still checked
        return None
    return (
        f"{col} was made from another image set: its manifest's source_plan_hash {str(want)[:16]} is not the "
        f"plan_hash {str(have)[:16]} of {src}/manifest.json (same shard names and keys, other images): regenerate "
        "it for this split (`genaug generate --column NEW`) or point --shards at the set it was made from"
    )


def check_column_source(col: Location, col_man: dict, src: Location, src_man: dict) -> None:
    """Raise ForeignColumn when column `col` was made from another image set than split `src` (see above)."""
    problem = column_source_problem(col, col_man, src, src_man)
    if problem:
        raise ForeignColumn(problem)
