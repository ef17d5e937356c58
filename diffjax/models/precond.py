"""Network → :class:`~diffjax.prediction.Model`: a network wrapped by its diffusion's training recipe.

A network is any callable ``net(x_in, c_noise, labels) -> output`` (``labels`` may be None), e.g.
:class:`diffjax.models.MLP` or :class:`diffjax.models.UNet`. ``precondition(sde, net)`` asks the diffusion for its
recipe (``sde.training_recipe(...)``, :mod:`diffjax.diffusions.recipes`) and returns the model the samplers use
and the losses train: VP/blurring/custom ε-prediction ``F(x, 999 t)``, flow matching's velocity, EDM's and VE's
preconditioned denoisers, FDM's ``c_in = s_F``, CLD's 2-channel ε or hybrid score matching — whatever the
diffusion's own file says. Nothing here depends on the concrete diffusion class.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ..diffusions.base import LinearDiffusion
from ..diffusions.recipes import Recipe
from ..prediction import Model


class Preconditioned:
    """``net`` wrapped by a recipe: a callable ``(y, t) -> prediction`` and a PyTree whose leaves are the
    network's (and the labels') arrays, so ``dj.sample`` passes a new checkpoint of the same network to its compiled
    sampler without recompiling."""

    def __init__(self, sde: LinearDiffusion, recipe: Recipe, net: Callable, labels: Any = None):
        self.sde, self.recipe, self.net, self.labels = sde, recipe, net, labels

    def __call__(self, y, t):
        return self.recipe.apply(self.sde, self.net, self.labels, y, t)


jax.tree_util.register_pytree_node(
    Preconditioned,
    lambda p: ((p.net, p.labels), (p.sde, p.recipe)),
    lambda aux, ch: Preconditioned(aux[0], aux[1], ch[0], ch[1]),
)


def recipe_of(
    sde: LinearDiffusion,
    cld_param: str = "eps",
    mixed: bool = True,
    sigma_data: float | None = None,
    prediction: str | None = None,
    **options,
) -> Recipe:
    """The diffusion's training recipe for these options (a clear error when it defines none); ``sigma_data`` None
    is the diffusion's own."""
    if not isinstance(sde, LinearDiffusion):
        raise TypeError(f"expected a diffjax diffusion, got {type(sde).__name__}")
    return sde.training_recipe(
        prediction=prediction or None, cld_param=cld_param, cld_mixed=mixed, sigma_data=sigma_data, **options
    )


def precondition(
    sde: LinearDiffusion,
    net: Callable,
    labels: Any = None,
    cld_param: str = "eps",
    mixed: bool = True,
    sigma_data: float | None = None,
    prediction: str | None = None,
) -> Model:
    """Wrap ``net`` as the model of ``sde`` (module docstring); ``labels`` conditions a class model;
    ``prediction`` chooses what an ε-family network predicts ('eps', 'v', 'velocity', 'x0')."""
    recipe = recipe_of(sde, cld_param, mixed, sigma_data, prediction, fdm_warmup_images=0.0)
    return Model(sde, Preconditioned(sde, recipe, net, labels), recipe.prediction)


class Guided:
    """Classifier-free guidance of two preconditioned models (a PyTree, like :class:`Preconditioned`)."""

    def __init__(self, cond: Model, uncond: Model, scale: Any):
        self.cond, self.uncond, self.scale = cond, uncond, scale

    def __call__(self, y, t):
        w = self.scale
        return jax.tree.map(lambda a, b: (1 + w) * a - w * b, self.cond.eps(y, t), self.uncond.eps(y, t))


jax.tree_util.register_pytree_node(Guided, lambda g: ((g.cond, g.uncond, g.scale), None), lambda _, ch: Guided(*ch))


def guided(sde: LinearDiffusion, net: Callable, labels: Any, scale: float, num_classes: int, **kw) -> Model:
    """Classifier-free guidance (Ho & Salimans 2022): ``ε̂ = (1 + w) ε̂(x | c) − w ε̂(x | ∅)`` (the null label is
    ``num_classes``); ``w = 0`` is the conditional model."""
    cond = precondition(sde, net, labels, **kw)
    uncond = precondition(sde, net, jnp.full(jnp.shape(labels), num_classes, jnp.int32), **kw)
    return Model(sde, Guided(cond, uncond, jnp.asarray(scale)), "eps")
