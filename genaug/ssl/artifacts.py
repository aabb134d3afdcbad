"""A trained method's artefacts and the one reader of all of them.

A run folder holds recipe.yaml (the resolved recipe), checkpoint-<step>.pt (training state, written by
genaug.train.checkpoint in a format torch.load(weights_only=True) reads: tensors and plain data, numpy arrays as
tensors), and, once finished, model.safetensors (the whole method) and backbone.safetensors (the backbone alone).
`load_method` turns any of them (or the folder) into the method, built from the recipe and loaded strictly.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genaug.core.errors import GenaugError
from genaug.core.files import fsync_dir, tmp_suffix
from genaug.core.recipes import recipe_hash
from genaug.ssl.methods import build_method
from genaug.ssl.strict import load_strict  # noqa: F401  (part of this module's API)

SAFE_ARRAY = "__genaug_ndarray__"  # marks a numpy array stored as a tensor (to_safe / from_safe)
CKPT_GLOB = "checkpoint-*.pt"


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


def to_safe(obj: Any) -> Any:
    """`obj` with numpy arrays and scalars as tensors and plain numbers, so torch.load(weights_only=True) reads it."""
    if isinstance(obj, np.ndarray):
        return {SAFE_ARRAY: torch.from_numpy(np.ascontiguousarray(obj)), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [to_safe(v) for v in obj]
        return tuple(out) if isinstance(obj, tuple) else out
    return obj


def from_safe(obj: Any) -> Any:
    """Inverse of to_safe: numpy arrays come back with their dtype."""
    if isinstance(obj, dict):
        if SAFE_ARRAY in obj:
            return obj[SAFE_ARRAY].numpy().astype(obj["dtype"], copy=False)
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [from_safe(v) for v in obj]
        return tuple(out) if isinstance(obj, tuple) else out
    return obj


def read_checkpoint(path: Path, fix: str = "use another checkpoint") -> dict[str, Any]:
    """A genaug training checkpoint read with weights_only=True (no code runs); unreadable ones name the fix."""
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore")
            doc = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        first = str(e).strip().splitlines()[0][:100] if str(e).strip() else ""
        raise GenaugError(
            f"checkpoint {path} cannot be read safely ({type(e).__name__}: {first}): it is not a genaug checkpoint "
            f"of this version, or it is damaged; {fix}"
        ) from None
    if not isinstance(doc, dict):
        raise GenaugError(f"checkpoint {path} does not hold a genaug training state; {fix}")
    return from_safe(doc)


@dataclass
class LoadedMethod:
    """A trained method in eval mode, its recipe, the file its weights came from, and what that file held."""

    method: torch.nn.Module
    recipe: dict
    weights: Path
    kind: str  # "model" (whole method), "checkpoint" (whole method, mid-training state) or "backbone"


def _read_recipe(folder: Path) -> dict:
    path = Path(folder) / "recipe.yaml"
    if not path.is_file():
        raise GenaugError(f"{folder} holds no recipe.yaml: give a genaug run folder, or the file inside one")
    from genaug.core.yamlio import read_yaml

    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise GenaugError(f"recipe {path} must be a YAML mapping")
    return doc


def method_state_from_checkpoint(ck: dict, path: Path) -> dict:
    """The method's state dict inside a training checkpoint (the trainer saves method and probe together)."""
    model = ck.get("model")
    if not isinstance(model, dict):
        raise GenaugError(f"checkpoint {path} holds no model state (keys: {', '.join(list(ck)[:8])})")
    state = {k[len("method.") :]: v for k, v in model.items() if k.startswith("method.")}
    return state or model


def latest_checkpoint_file(folder: Path) -> Path | None:
    """The newest checkpoint-<step>.pt of a run folder (by step), or None."""
    found = sorted(Path(folder).glob(CKPT_GLOB))
    found = [p for p in found if p.name[len("checkpoint-") : -3].isdigit()]
    return found[-1] if found else None


def is_run_artefact(path: Path) -> bool:
    """True for a genaug run folder or a file in one (recipe.yaml next to it)."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    return (folder / "recipe.yaml").is_file()


def load_method(path: str | os.PathLike) -> LoadedMethod:
    """The trained method of a run folder, model.safetensors, backbone.safetensors or checkpoint-<step>.pt.

    A folder means its model.safetensors when the run finished, else its newest checkpoint. backbone.safetensors
    loads the backbone into the method its recipe builds (the heads stay at their initialisation).
    """
    from safetensors.torch import load_file

    p = Path(path)
    if not p.exists():
        raise GenaugError(
            f"{p} does not exist: give a run folder, its model.safetensors, backbone.safetensors or a checkpoint"
        )
    if p.is_dir():
        if (p / "model.safetensors").is_file():
            p = p / "model.safetensors"
        else:
            ck = latest_checkpoint_file(p)
            if ck is None:
                raise GenaugError(f"{p} holds neither model.safetensors nor a checkpoint-*.pt: is it a genaug run?")
            p = ck
    folder = p.parent
    if p.suffix == ".pt":
        ck = read_checkpoint(p)
        recipe = ck.get("recipe") if isinstance(ck.get("recipe"), dict) else _read_recipe(folder)
        method = build_method(recipe)
        load_strict(method, method_state_from_checkpoint(ck, p), p)
        return LoadedMethod(method.eval(), recipe, p, "checkpoint")
    if p.suffix != ".safetensors":
        raise GenaugError(f"{p}: unknown weights format (a genaug run gives .safetensors or checkpoint-*.pt)")
    recipe = _read_recipe(folder)
    method = build_method(recipe)
    try:
        state = load_file(str(p))
    except Exception as e:  # noqa: BLE001
        raise GenaugError(f"{p} is not a readable safetensors file ({e})") from None
    kind = "backbone" if p.name.startswith("backbone") else "model"
    load_strict(method.backbone if kind == "backbone" else method, state, p)
    return LoadedMethod(method.eval(), recipe, p, kind)


def load_trained(run_dir: Path, what: str = "model") -> tuple[torch.nn.Module, dict]:
    """The method of a finished run and its recipe; `what="backbone"` loads only backbone.safetensors."""
    run_dir = Path(run_dir)
    path = run_dir / f"{what}.safetensors"
    if not path.is_file() or not (run_dir / "recipe.yaml").is_file():
        raise GenaugError(f"{run_dir} holds no finished training run (recipe.yaml and {what}.safetensors)")
    loaded = load_method(path)
    return loaded.method, loaded.recipe
