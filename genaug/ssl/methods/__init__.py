"""SSL methods: a registry from recipe name to class, one class per method over `SSLMethod`.

Other modules register their own methods with `@register_method("name")` and reuse the base, the losses and the
loop; a method declares its arguments as a nested `Args` model (a `MethodArgs`, see args.py) or, for a plug-in, in a
plain `__init__` signature.

Recipes are data, so the module a recipe names (`module:`) is imported only when it is trusted: a module
inside genaug, a module an installed package declares in the entry-point group `genaug.methods`, or one the user
allows by name (`--allow-module NAME` or GENAUG_ALLOW_MODULES=a,b). Never a module found in the current directory
by accident of sys.path.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from importlib.metadata import entry_points
from pathlib import Path

from genaug.core.errors import GenaugError
from genaug.ssl.backbones import backbone_from_recipe
from genaug.ssl.methods import contrastive, distillation, probabilistic, redundancy, simvae, swav  # noqa: F401
from genaug.ssl.methods.args import MethodArgs
from genaug.ssl.methods.base import (
    METHODS,
    Progress,
    SSLMethod,
    each_view,
    ema_update,
    forward_views,
    fp32,
    make_teacher,
    mlp,
    register_method,
)

__all__ = [
    "METHODS",
    "MethodArgs",
    "Progress",
    "SSLMethod",
    "build_method",
    "each_view",
    "ema_update",
    "forward_views",
    "fp32",
    "get_method",
    "make_teacher",
    "mlp",
    "register_method",
]


def allowed_modules() -> set[str]:
    """Plug-in method modules the user allows by name: GENAUG_ALLOW_MODULES (comma-separated) and entry points."""
    names = {m.strip() for m in os.environ.get("GENAUG_ALLOW_MODULES", "").split(",") if m.strip()}
    names |= {ep.value.split(":")[0] for ep in entry_points(group="genaug.methods")}
    return names


def import_method_module(module: str) -> None:
    """Import the module a recipe names, if it is trusted (inside genaug, declared or allowed); else a user error."""
    if not (module == "genaug" or module.startswith("genaug.") or module in allowed_modules()):
        raise GenaugError(
            f"recipe `module: {module}` is not a genaug module: recipes are data and do not import code; if you "
            f"trust it, pass --allow-module {module} (or set GENAUG_ALLOW_MODULES={module})"
        )
    if not module.startswith("genaug"):
        spec = importlib.util.find_spec(module.split(".")[0])
        origin = getattr(spec, "origin", None) or ""
        if spec is not None and origin and Path(origin).resolve().is_relative_to(Path.cwd().resolve()):
            if module not in {m.strip() for m in os.environ.get("GENAUG_ALLOW_MODULES", "").split(",")}:
                raise GenaugError(f"recipe `module: {module}` resolves to {origin} in the current directory: refused")
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        msg = f"recipe `module: {module}` cannot be imported ({e}): fix the recipe's module field"
        raise GenaugError(msg) from None


def get_method(name: str, module: str | None = None) -> type[SSLMethod]:
    """The class registered as `name`, importing the recipe's `module` first when it is trusted."""
    if module:
        import_method_module(module)
    if name not in METHODS:
        for ep in entry_points(group="genaug.methods", name=name):
            ep.load()
    if name not in METHODS:
        raise GenaugError(
            f"unknown method {name!r}: choose one of {', '.join(sorted(METHODS))} (recipe field `method`)"
        )
    return METHODS[name]


def build_method(recipe: dict, init_weights: bool = False) -> SSLMethod:
    """Build the method of a resolved training recipe: backbone from `backbone`, heads from `method_args`.

    `init_weights` loads `backbone.weights` (a training run's starting point) before the heads and teachers copy it.
    """
    backbone, dim = backbone_from_recipe(recipe, init_weights)
    cls = get_method(recipe.get("method", recipe.get("name", "")), recipe.get("module"))
    try:
        return cls(backbone, dim, **(recipe.get("method_args") or {}))
    except TypeError as e:
        raise GenaugError(f"recipe method_args do not fit method {cls.name!r}: {e}") from None
