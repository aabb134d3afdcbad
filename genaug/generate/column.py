"""A generated column's identity: its folder, manifest, recipe hash and the source shards it aligns with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genaug import __version__
from genaug.core.errors import GenaugError
from genaug.core.jsonio import sample_json
from genaug.core.recipes import recipe_hash
from genaug.shards.layout import SHARD_RE, ShardSet, check_name
from genaug.shards.manifest import open_split, read_manifest, write_manifest
from genaug.shards.writer import is_shard_done

#: recipe keys that do not change the images (speed, memory, caches), left out of the recipe hash
RUNTIME_KEYS = ("name", "description", "runtime")


def column_hash(recipe: dict) -> str:
    """Identity of the images a recipe makes: its hash without the runtime keys."""
    return recipe_hash(recipe, ignore=RUNTIME_KEYS)


def gen_fields(k: int) -> tuple[str, ...]:
    """Fields of a generated sample: gen_0.jpg ... gen_{k-1}.jpg and json."""
    return tuple(f"gen_{i}.jpg" for i in range(k)) + ("json",)


def required_fields(k: int):
    """Validator for commit_shard: a sample whose json says failed needs only json, others every gen field."""
    full = gen_fields(k)

    def need(sample: dict) -> tuple[str, ...]:
        meta = sample_json(sample.get("json", b"{}"))
        if not isinstance(meta, dict):
            return full
        failed = meta.get("failed")
        return ("json",) if failed else full

    return need


@dataclass
class Column:
    """A generated column of one split: where it lives, which source shards it mirrors, its manifest."""

    source: Path
    folder: Path
    name: str
    indices: list[int]
    manifest: dict

    @property
    def k(self) -> int:
        """Variants per source image."""
        return int(self.manifest["k"])


def source_indices(source: Path, manifest: dict) -> list[int]:
    """Shard indices of a source split from its manifest's shard list."""
    out = []
    for name in manifest.get("shards") or []:
        m = SHARD_RE.match(name)
        if not m:
            raise GenaugError(f"{source / 'manifest.json'} lists {name!r}, not a NNNNNN.tar shard: re-ingest the split")
        out.append(int(m.group(1)))
    return out


def open_source(shards: str, split: str) -> tuple[ShardSet, Path, dict]:
    """The shard set, the source split folder and its manifest; a missing split names those that exist."""
    return open_split(shards, split)


def open_column(
    shards: str, split: str, recipe: dict, column: str | None, create: bool = True, fidelity: dict | None = None
) -> Column:
    """Open (and with `create`, start) the column `column` (default: the recipe's name) for `split`.

    An existing column made with another recipe hash, k or source plan is refused: name a new --column. A new
    column records `fidelity` (score settings) in its manifest; an existing one keeps what it was made with.
    """
    ss, src, src_manifest = open_source(shards, split)
    name = check_name(column, "--column") if column else check_name(str(recipe["name"]), "recipe `name:`")
    folder = ss.gen_dir(name, split)
    indices = source_indices(src, src_manifest)
    rh = column_hash(recipe)
    manifest = {
        "kind": "generated",
        "column": name,
        "source_split": split,
        "source_plan_hash": src_manifest.get("plan_hash"),
        "shards": [f"{i:06d}.tar" for i in indices],
        "num_shards": len(indices),
        "recipe": recipe,
        "recipe_hash": rh,
        "k": int(recipe["k"]),
        "fidelity": fidelity,
        "genaug_version": __version__,
    }
    if (folder / "manifest.json").exists():
        old = read_manifest(folder)
        if old.get("recipe_hash") != rh:
            raise GenaugError(
                f"column {name!r} of split {split!r} in {ss.root} was made with recipe hash {old.get('recipe_hash')} "
                f"and this run resolves to {rh} (different model, k, steps, seed, dtype, ...): pass --column NEWNAME "
                f"to make a second column, or rerun with the settings of {folder / 'manifest.json'}"
            )
        if old.get("source_plan_hash") != src_manifest.get("plan_hash"):
            raise GenaugError(
                f"the source split {src} changed since column {name!r} was made: delete {folder} "
                "or generate into another --column"
            )
        return Column(src, folder, name, indices, old)
    if not create:
        raise GenaugError(
            f"{ss.root} has no generated column {name!r} for split {split!r} "
            f"(columns: {', '.join(ss.columns()) or 'none'})"
        )
    for i in indices:
        if not is_shard_done(src, i, check_sha=False):
            raise GenaugError(f"source shard {src / f'{i:06d}.tar'} is not complete: rerun `genaug ingest` first")
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder, manifest)
    return Column(src, folder, name, indices, manifest)
