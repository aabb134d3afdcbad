"""Recipes: YAML files holding every default of one generator (pipelines/) or SSL method (trainers/)."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from genaug.core.errors import GenaugError
from genaug.core.hashing import stable_hash
from genaug.core.yamlio import read_yaml

KINDS = {"pipelines": "genaug.pipelines", "trainers": "genaug.trainers"}


def available(kind: str) -> list[str]:
    """Names of the recipes of `kind` (pipelines or trainers) shipped with genaug."""
    root = resources.files(KINDS[kind])
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def recipe_path(kind: str, name_or_path: str) -> Path | Any:
    """Locate a recipe: a shipped name (`sd`, `barlow`) or a path to the user's own YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():  # a folder that happens to share a recipe's name is no recipe
        if p.is_dir():
            raise GenaugError(f"recipe {p} is a folder, not a file: give the path of a .yaml recipe inside it")
        if not p.is_file():
            raise GenaugError(f"recipe file {p} does not exist")
        return p
    res = resources.files(KINDS[kind]) / f"{name_or_path}.yaml"
    if not res.is_file():
        flag = "--model" if kind == "pipelines" else "--method"
        raise GenaugError(
            f"unknown {flag} {name_or_path!r}: choose one of {', '.join(available(kind))} "
            "or give a path to a .yaml recipe"
        )
    return res


def load_recipe(kind: str, name_or_path: str, overrides: dict[str, Any] | None = None) -> dict:
    """Load a recipe, apply `overrides` (dotted keys, None values ignored) and return the resolved dict."""
    src = recipe_path(kind, name_or_path)
    doc = read_yaml(src)
    if not isinstance(doc, dict):
        raise GenaugError(f"recipe {src} must be a YAML mapping")
    doc.setdefault("name", Path(str(name_or_path)).stem)
    return apply_overrides(doc, overrides or {})


def apply_overrides(recipe: dict, overrides: dict[str, Any]) -> dict:
    """Return a copy of `recipe` with dotted-key overrides applied (a None value leaves the default)."""
    out = copy.deepcopy(recipe)
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise GenaugError(f"cannot set {dotted}: {part} is not a section of the recipe")
        node[parts[-1]] = value
    return out


def recipe_hash(recipe: dict, ignore: tuple[str, ...] = ()) -> str:
    """Short stable hash of a resolved recipe (keys in `ignore` left out): the identity of its outputs."""
    return stable_hash({k: v for k, v in recipe.items() if k not in ignore})[:16]


def dump_recipe(recipe: dict, path: Path) -> None:
    """Write a resolved recipe as YAML next to the outputs it produced."""
    Path(path).write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
