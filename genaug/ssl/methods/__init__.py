"""SSL methods: a registry from recipe name to class, one class per method over `SSLMethod`.

Other modules register their own methods with `@register_method("name")` and reuse the base, the losses and the
loop; a recipe may name the module that defines its method (`module: genaug.ssl.prob`), which is imported before
the lookup.
"""

from __future__ import annotations

import importlib
from typing import Any

from genaug.core.errors import GenaugError
from genaug.ssl.backbones import build_backbone
from genaug.ssl.methods import contrastive, distillation, redundancy, swav  # noqa: F401  (registration)
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


def get_method(name: str, module: str | None = None) -> type[SSLMethod]:
    """The class registered as `name`, importing `module` first when the recipe names one."""
    if module:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            raise GenaugError(
                f"recipe `module: {module}` cannot be imported ({e}): fix the recipe's module field"
            ) from None
    if name not in METHODS:
        raise GenaugError(
            f"unknown method {name!r}: choose one of {', '.join(sorted(METHODS))} (recipe field `method`)"
        )
    return METHODS[name]


def build_method(recipe: dict) -> SSLMethod:
    """Build the method of a resolved training recipe: backbone from `backbone`, heads from `method_args`."""
    bb: dict[str, Any] = dict(recipe.get("backbone") or {})
    image_size = int((recipe.get("data") or {}).get("image_size", 224))
    backbone, dim = build_backbone(
        bb.get("name", "resnet50"), image_size, bb.get("cifar_stem", "auto"), int(bb.get("width", 16))
    )
    cls = get_method(recipe.get("method", recipe.get("name", "")), recipe.get("module"))
    try:
        return cls(backbone, dim, **(recipe.get("method_args") or {}))
    except TypeError as e:
        raise GenaugError(f"recipe method_args do not fit method {cls.name!r}: {e}") from None
