"""A generated column's identity: its folder, manifest, recipe hash and the source shards it aligns with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genaug import __version__
from genaug.core.errors import GenaugError
from genaug.core.jsonio import sample_json
from genaug.core.recipes import recipe_hash
from genaug.shards.layout import SHARD_RE, ShardSet, check_name, finish_ingest, status_command
from genaug.shards.manifest import open_split, read_manifest, write_manifest
from genaug.shards.writer import is_shard_done, read_stats

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


#: the recipe fields whose change leaves every existing variant as it is (`generate --update` remakes the rest)
UPDATABLE_KEYS = ("k",)


def changed_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted recipe keys whose values differ between two recipes, the runtime keys left out."""
    out = []
    for key in sorted(set(old) | set(new)):
        if not prefix and key in RUNTIME_KEYS:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_fields(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


@dataclass
class Column:
    """A generated column of one split: where it lives, which source shards it mirrors, its manifest.

    While `generate --update` runs, `previous` holds the k and recipe hash the column is being updated from, and
    `recipe_hash` the one it is being updated to: a shard is current only once its stats carry the new hash.
    """

    source: Path
    folder: Path
    name: str
    indices: list[int]
    manifest: dict
    recipe_hash: str = ""
    previous: dict | None = None

    @property
    def k(self) -> int:
        """Variants per source image."""
        return int(self.manifest["k"])

    def is_current(self, index: int) -> bool:
        """Shard `index` is committed (size checked) and, during an update, made with the new recipe."""
        if not is_shard_done(self.folder, index, check_sha=False):
            return False
        return self.previous is None or (read_stats(self.folder, index) or {}).get("recipe_hash") == self.recipe_hash

    def finish_update(self) -> bool:
        """Once every shard is current, make the update the column's recipe (idempotent); True when it is done."""
        if self.previous is None:
            return True
        if not all(self.is_current(i) for i in self.indices):
            return False
        man = read_manifest(self.folder)
        up = man.pop("update", None)
        if up is not None and up.get("recipe_hash") == self.recipe_hash:
            frm = {"recipe_hash": man.get("recipe_hash"), "k": man.get("k")}
            man.update(recipe=up["recipe"], recipe_hash=up["recipe_hash"], k=up["k"])
            man["updated_from"] = [*(man.get("updated_from") or []), frm]
            write_manifest(self.folder, man)
        self.manifest, self.previous = read_manifest(self.folder), None
        return True


def updating_error(folder: Path | str, name: str) -> GenaugError:
    """The one-line error of a reader that meets a column while `generate --update` is remaking it."""
    return GenaugError(
        f"column {name!r} ({folder}) is being updated to a new recipe by generate --update: rerun that command until "
        f"it finishes (it resumes; {status_command(folder)} shows what is left), then use the column"
    )


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
    shards: str,
    split: str,
    recipe: dict,
    column: str | None,
    create: bool = True,
    fidelity: dict | None = None,
    update: bool = False,
) -> Column:
    """Open (and with `create`, start) the column `column` (default: the recipe's name) for `split`.

    An existing column made with another recipe hash, k or source plan is refused: name a new --column. With
    `update`, a column whose recipe differs only in UPDATABLE_KEYS (k) is updated in place: its manifest records the
    update until every shard is remade (`Column.finish_update`). A new column records `fidelity` (score settings) in
    its manifest; an existing one keeps what it was made with.
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
        if old.get("source_plan_hash") != src_manifest.get("plan_hash"):
            raise GenaugError(
                f"the source split {src} changed since column {name!r} was made: delete {folder} "
                "or generate into another --column"
            )
        pending = old.get("update")
        if pending is not None:  # an update was started: only the same target resumes it
            if pending.get("recipe_hash") != rh:
                raise GenaugError(
                    f"column {name!r} in {ss.root} is being updated to recipe hash {pending.get('recipe_hash')} "
                    f"and this run resolves to {rh}: rerun the update with the settings in {folder / 'manifest.json'} "
                    "(`update.recipe`) to finish it"
                )
            return Column(src, folder, name, indices, old, rh, dict(pending["from"]))
        if old.get("recipe_hash") == rh:
            return Column(src, folder, name, indices, old, rh)
        if not update:
            raise GenaugError(
                f"column {name!r} of split {split!r} in {ss.root} was made with recipe hash {old.get('recipe_hash')} "
                f"and this run resolves to {rh} (different model, k, steps, seed, dtype, ...): pass --column NEWNAME "
                f"to make a second column, rerun with the settings of {folder / 'manifest.json'}, or (only k "
                "changed) add --update to make just the variants that change"
            )
        return start_update(Column(src, folder, name, indices, old, rh), recipe)
    if update:
        raise GenaugError(
            f"--update: {ss.root} has no generated column {name!r} for split {split!r} to update "
            f"(columns: {', '.join(ss.columns()) or 'none'}): drop --update to make it"
        )
    if not create:
        raise GenaugError(
            f"{ss.root} has no generated column {name!r} for split {split!r} "
            f"(columns: {', '.join(ss.columns()) or 'none'})"
        )
    for i in indices:
        if not is_shard_done(src, i, check_sha=False):
            raise GenaugError(
                f"source shard {src / f'{i:06d}.tar'} is not complete: {finish_ingest(src, src_manifest)}"
            )
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder, manifest)
    return Column(src, folder, name, indices, manifest, rh)


def start_update(col: Column, recipe: dict) -> Column:
    """Record in the manifest that `col` is being updated to `recipe`; refuse a change that touches every variant."""
    old = col.manifest
    changed = changed_fields(old.get("recipe") or {}, recipe)
    touching = [f for f in changed if f not in UPDATABLE_KEYS]
    if touching:
        shown = ", ".join(touching[:4]) + (", ..." if len(touching) > 4 else "")
        raise GenaugError(
            f"--update: the change of {shown} touches every variant of column {col.name!r}: generate into a new "
            f"column instead (--column NEWNAME); --update remakes only what a change of {', '.join(UPDATABLE_KEYS)} "
            "adds"
        )
    frm = {"recipe_hash": old.get("recipe_hash"), "k": int(old["k"])}
    man = {**old, "update": {"recipe": recipe, "recipe_hash": col.recipe_hash, "k": int(recipe["k"]), "from": frm}}
    write_manifest(col.folder, man)
    col.manifest, col.previous = man, frm
    return col
