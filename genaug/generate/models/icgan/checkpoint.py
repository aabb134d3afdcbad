"""Read IC-GAN checkpoint folders in the official layout without running code from their pickles.

Official layout (what `tar -xf icgan_biggan_imagenet_res256.tar.gz` gives): a folder named after the experiment
holding `G_ema_best0.pth` / `G_ema_best1.pth` (generator EMA state dicts) and `state_dict_best0.pth` /
`state_dict_best1.pth` (training state: `best_FID`, `config`, ...). Like the official loader
(`inference/utils.py: load_model_inference`), the best is the one with the lower stored `best_FID` (best0 on ties).
The training-state pickles hold non-tensor objects (the config stores `nn.ReLU` modules, the FID may be a numpy
scalar), so they are read with an unpickler that rebuilds only plain data and numpy scalars and turns every other
global into an inert placeholder.
"""

from __future__ import annotations

import pickle
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genaug.core.errors import GenaugError

BEST_NAMES = ("best0", "best1")


class Opaque:
    """Inert stand-in for an object the restricted unpickler will not build (e.g. an nn.ReLU in a config)."""

    qualname = "?"
    dump_patches = False  # torch's legacy (non-zip) format asks module classes for this

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> Opaque:
        return Opaque(*args)

    def __repr__(self) -> str:
        return f"<opaque {self.qualname}>"


def _opaque(module: str, name: str) -> type:
    return type("Opaque", (Opaque,), {"qualname": f"{module}.{name}"})


_ALLOWED = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("_codecs", "encode"),  # how protocol-2 pickles spell bytes
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("torch._utils", "_rebuild_tensor_v2"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED or (module == "torch" and name.endswith("Storage")):
            if module.startswith("numpy"):
                return getattr(np, name) if name == "dtype" else _np_scalar
            return super().find_class(module, name)
        if module.startswith("numpy.dtypes"):
            return getattr(np.dtypes, name) if hasattr(np, "dtypes") else _opaque(module, name)
        return _opaque(module, name)


def _np_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    """numpy's scalar reconstructor for plain dtypes (no object arrays)."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or data is None:
        return Opaque(dtype)
    return np.frombuffer(data, dtype=dtype, count=1)[0]


_restricted_pickle = types.SimpleNamespace(
    __name__="genaug_restricted_pickle",
    Unpickler=_RestrictedUnpickler,
    load=lambda f, **kw: _RestrictedUnpickler(f, **kw).load(),
)


def load_training_state(path: Path) -> dict:
    """Read a `state_dict_best*.pth` file: plain data only, other objects replaced by `Opaque` placeholders."""
    try:
        with warnings.catch_warnings():  # legacy format: "source code of class ... has changed" for placeholders
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", pickle_module=_restricted_pickle, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise GenaugError(f"cannot read IC-GAN training state {path}: {e}; re-extract the checkpoint archive") from None
    if not isinstance(obj, dict):
        raise GenaugError(f"IC-GAN training state {path} is not a dict; is it a state_dict_best*.pth file?")
    return obj


def _fid(state: dict) -> float:
    value = state.get("best_FID")
    if isinstance(value, torch.Tensor):
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def find_experiment_dir(weights: Path, experiment_name: str) -> Path:
    """The folder holding `G_ema_best*.pth`: `weights` itself or `weights/<experiment_name>`."""
    for cand in (weights, weights / experiment_name):
        if any((cand / f"G_ema_{b}.pth").is_file() for b in BEST_NAMES):
            return cand
    raise GenaugError(
        f"no IC-GAN checkpoint (G_ema_best0.pth or G_ema_best1.pth) in {weights} or {weights / experiment_name}; "
        f"download and extract {experiment_name}.tar.gz from dl.fbaipublicfiles.com/ic_gan/ into --weights DIR"
    )


def select_best(exp_dir: Path) -> tuple[str, dict]:
    """Pick best0/best1 by the lower `best_FID` in state_dict_best*.pth; return the name and its training state."""
    best_name, best_fid, best_state = "", 1e5, {}
    for name in BEST_NAMES:
        sd_path = exp_dir / f"state_dict_{name}.pth"
        if not sd_path.is_file() or not (exp_dir / f"G_ema_{name}.pth").is_file():
            continue
        state = load_training_state(sd_path)
        fid = _fid(state)
        if fid < best_fid:
            best_name, best_fid, best_state = name, fid, state
    if not best_name:
        present = [n for n in BEST_NAMES if (exp_dir / f"G_ema_{n}.pth").is_file()]
        if not present:
            raise GenaugError(f"no G_ema_best0.pth or G_ema_best1.pth in {exp_dir}")
        # no usable state_dict_best*.pth: fall back to the first generator present, as the files allow no ranking
        return present[0], {}
    return best_name, best_state


def load_generator_state(exp_dir: Path, name: str) -> dict[str, torch.Tensor]:
    """Tensors of `G_ema_<name>.pth` (a plain state dict, read with weights_only)."""
    path = exp_dir / f"G_ema_{name}.pth"
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise GenaugError(f"cannot read IC-GAN generator weights {path}: {e}") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise GenaugError(f"{path} is not a state dict of tensors; is it an IC-GAN G_ema_best*.pth file?")
    return sd


def check_config(state: dict, arch: dict, where: Path) -> None:
    """Refuse a checkpoint whose stored training config disagrees with the recipe's architecture."""
    cfg = state.get("config")
    if not isinstance(cfg, dict):
        return
    keys = ("resolution", "G_ch", "G_attn", "dim_z", "hier", "shared_dim_feat", "num_G_SVs", "n_classes")
    diffs = [
        f"{k}={cfg[k]!r} (recipe {arch[k]!r})"
        for k in keys
        if k in cfg and k in arch and isinstance(cfg[k], (int, float, str, bool)) and cfg[k] != arch[k]
    ]
    if cfg.get("class_cond") is True:
        diffs.append("class_cond=True (genaug's IC-GAN recipes are instance-conditioned only)")
    if diffs:
        raise GenaugError(
            f"IC-GAN checkpoint {where} was trained with {', '.join(diffs)}; use the recipe that "
            "matches it (icgan-64, icgan-128, icgan, icgan-256-half) or override model.* values"
        )
