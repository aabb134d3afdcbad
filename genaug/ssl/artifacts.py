"""A trained method's artefacts: backbone.safetensors and model.safetensors next to recipe.yaml, and reading them."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from genaug.core.errors import GenaugError
from genaug.core.files import fsync_dir, tmp_suffix
from genaug.core.recipes import recipe_hash
from genaug.ssl.methods import build_method


def _tensors(sd: dict) -> dict:
    return {k: v.detach().cpu().contiguous().clone() for k, v in sd.items() if torch.is_tensor(v)}


def export_model(run_dir: Path, method: torch.nn.Module, recipe: dict) -> tuple[Path, Path]:
    """Write backbone.safetensors (backbone weights) and model.safetensors (the whole method, for `encode`)."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    meta = {
        "method": str(recipe.get("method", "")),
        "backbone": str((recipe.get("backbone") or {}).get("name", "")),
        "recipe_hash": recipe_hash(recipe),
        "recipe": "recipe.yaml",
    }
    out = []
    for name, sd in (("backbone", method.backbone.state_dict()), ("model", method.state_dict())):
        path = run_dir / f"{name}.safetensors"
        tmp = path.with_name(path.name + tmp_suffix())
        save_file(_tensors(sd), str(tmp), metadata=meta)
        os.replace(tmp, path)
        out.append(path)
    fsync_dir(run_dir)
    return out[0], out[1]


def load_trained(run_dir: Path, what: str = "model") -> tuple[torch.nn.Module, dict]:
    """Rebuild the method of a finished run from recipe.yaml and load its weights; returns (method, recipe).

    `what="backbone"` loads only backbone.safetensors (heads stay at their initialisation)."""
    import yaml
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    rpath, wpath = run_dir / "recipe.yaml", run_dir / f"{what}.safetensors"
    if not rpath.is_file() or not wpath.is_file():
        raise GenaugError(f"{run_dir} holds no finished training run (recipe.yaml and {what}.safetensors)")
    recipe = yaml.safe_load(rpath.read_text(encoding="utf-8"))
    method = build_method(recipe)
    target = method if what == "model" else method.backbone
    target.load_state_dict(load_file(str(wpath)))
    return method.eval(), recipe
