"""The arguments of the SSL methods (recipe key `method_args`): one typed model per method, built from shared blocks.

An argument that means the same in several methods (the projector's widths, the temperature, the EMA teacher's
momentum, the prob kinds' samples / prior / components / beta) is declared once, in a block below, with its type,
bounds and help; a method's `Args` model combines the blocks it uses with its own fields, and its `published` mapping
gives the published default of each block field (the defaults differ between methods and are part of recorded
recipes, so a block field has no default of its own and a model that forgets one fails its first use):

    class SimCLR(SSLMethod):
        class Args(ProjectorLayers, Temperature):
            published = {"proj_hidden": 2048, "proj_out": 128, "proj_layers": 2, "temperature": 0.1}

The constructor keeps its calling convention `Method(backbone, feat_dim, **method_args)`; `SSLMethod.__init__`
checks the keywords through the model once (one-line errors naming `method_args.KEY`) and keeps the typed values in
`self.args`. Plug-in methods may declare an `Args` model the same way, or keep a plain `__init__` signature.
"""

from __future__ import annotations

from copy import copy
from typing import Any, ClassVar, Literal, TypeVar

from torch import nn

from genaug.core.config import Number, Settings, close_key, setting
from genaug.core.errors import GenaugError
from genaug.ssl.methods.base import mlp

A = TypeVar("A", bound="MethodArgs")


class MethodArgs(Settings):
    """The arguments of one SSL method: strict types, bounds, help; `published` sets the block fields' defaults."""

    #: the published default of each field this model takes from a block (field name -> value)
    published: ClassVar[dict[str, Any]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Give the fields named in the class's own `published` their default (a copy of the block's field)."""
        super().__pydantic_init_subclass__(**kwargs)
        own = cls.__dict__.get("published") or {}
        for name, value in own.items():
            field = copy(cls.model_fields[name])
            field.default = value
            cls.__pydantic_fields__[name] = field
        if own:
            cls.model_rebuild(force=True)

    @classmethod
    def check(cls: type[A], args: dict | None, method: str) -> A:
        """`args` checked (unknown key, type, bound: one line naming method_args.KEY), every default filled in."""
        args = dict(args or {})
        for key in args:
            if key not in cls.model_fields:
                near = close_key(str(key), list(cls.model_fields), "method_args.")
                raise GenaugError(f"unknown recipe key method_args.{key} for method {method!r}{near}")
        return cls.parse(args, "method_args")


def args_model(cls: type) -> type[MethodArgs] | None:
    """The `Args` model of method class `cls`, or None where its own `__init__` signature declares its arguments
    (a plug-in with a plain signature, or a subclass whose `__init__` adds arguments to its base's)."""
    init_owner = next(c for c in cls.__mro__ if "__init__" in c.__dict__)
    args_owner = next((c for c in cls.__mro__ if c.__dict__.get("Args") is not None), None)
    if args_owner is None or not issubclass(args_owner, init_owner):
        return None
    return args_owner.__dict__["Args"]


# --- blocks: arguments that mean the same in several methods ------------------------------------------------------


class Projector(MethodArgs):
    """The projector MLP on the backbone features."""

    proj_hidden: int = setting(..., "Hidden width of the projector MLP.", ge=1)
    proj_out: int = setting(..., "Output width of the projector: the embedding the loss sees.", ge=1)

    def projector(self, in_dim: int, layers: int, **shape: Any) -> nn.Sequential:
        """The projector in_dim -> proj_hidden ... -> proj_out of `layers` Linears (`shape`: mlp's BN, bias flags)."""
        return mlp(in_dim, self.proj_hidden, self.proj_out, layers, **shape)


class ProjectorLayers(Projector):
    """A projector whose depth is an argument too."""

    proj_layers: int = setting(..., "Linear layers of the projector MLP.", ge=1)


class Predictor(Projector):
    """A predictor MLP proj_out -> pred_hidden -> proj_out on top of the projector (BYOL, SimSiam, MoCo v3)."""

    pred_hidden: int = setting(..., "Hidden width of the 2-layer predictor MLP.", ge=1)

    def predictor(self, **shape: Any) -> nn.Sequential:
        """The predictor proj_out -> pred_hidden -> proj_out with BN after the hidden layer (`shape`: mlp's flags)."""
        return mlp(self.proj_out, self.pred_hidden, self.proj_out, 2, bn=True, **shape)


class Temperature(MethodArgs):
    """The temperature that divides the similarities of a softmax loss."""

    temperature: Number = setting(..., "Temperature of the loss's softmax (divides the similarities).", gt=0.0)


class Momentum(MethodArgs):
    """An EMA teacher's momentum."""

    momentum: Number = setting(..., "EMA momentum of the teacher (its base value).", ge=0.0, le=1.0)


class EMATeacher(Momentum):
    """An EMA teacher whose momentum may follow BYOL's cosine schedule to 1."""

    momentum_cosine: bool = setting(..., "Raise the momentum to 1 along a cosine over training (BYOL's schedule).")


class ProbKind(MethodArgs):
    """The Gaussian embedding and KL term of a probabilistic method (Z-prob: on the projector output)."""

    samples: int = setting(12, "Samples of the embedding per view that go through the base loss.", ge=1)
    beta: Number = setting(..., "Weight of the KL term to the prior.", ge=0.0)
    prior: Literal["normal", "standard", "gaussian", "mog", "mixture"] = setting(
        "normal", "The prior: normal (N(0, I)) or mog (a learnable per-dimension mixture)."
    )
    components: int = setting(10, "Components of the mog prior.", ge=1)


class HProbKind(ProbKind):
    """H-prob: the Gaussian sits on the backbone output."""

    latent_dim: int | None = setting(
        None, "Width of the stochastic representation (default: the backbone's; else the projector is rebuilt).", ge=1
    )
