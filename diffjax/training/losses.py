"""The training loss: the diffusion's own recipe (:mod:`diffjax.diffusions.recipes`) on its own ``perturb``.

``diffusion_loss(sde, net, key, x0, labels, images, cfg)`` evaluates ``E_t w(t) ‖prediction(u_t, t) − target‖²`` with
the times, weight, target and preconditioning the diffusion's ``training_recipe`` gives (ε-MSE for VP, blurring,
custom diffusions; v or velocity targets with ``prediction``; flow matching's ``ε − x_0``; EDM's and VE's weighted
denoising losses; FDM with its warm-up clamp counted in ``images``; CLD's ε or hybrid score matching). Losses are
averaged over dimensions (scale-free across data sizes). Classifier-free guidance training: ``label_dropout``
replaces a label by the null class ``num_classes`` with that probability.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ..diffusions.base import LinearDiffusion
from ..diffusions.recipes import fdm_weight_cap
from ..models.precond import Preconditioned, recipe_of

__all__ = ["LossConfig", "diffusion_loss", "fdm_weight_cap"]


@dataclasses.dataclass(frozen=True)
class LossConfig:
    p_mean: float = -1.2  # EDM / EDM-FDM log-normal σ
    p_std: float = 1.2
    sigma_data: float | None = None  # None: the diffusion's own (EDM(sigma_data=…), FDM(sigma_data=…); 0.5 by default)
    cld_param: str = "eps"  # 'eps' (K = L, 2-channel ε) or 'hsm' (velocity-only, CLD-SGM)
    cld_mixed: bool = True
    # FDM: W, the images until the clamp 5·100^{n/W} reaches 500; < 0: derived by the Trainer from the
    # learning-rate ramp (the official fraction, FDM.loss_warmup_fraction); 0: off
    fdm_warmup_images: float = -1.0
    prediction: str = ""  # ε-family diffusions: 'eps', 'v', 'velocity' or 'x0' ('' = the diffusion's default)
    label_dropout: float = 0.0  # classifier-free guidance
    num_classes: int = 0

    def recipe(self, sde: LinearDiffusion):
        """``sde``'s training recipe with these options."""
        return recipe_of(
            sde,
            self.cld_param,
            self.cld_mixed,
            self.sigma_data,
            self.prediction,
            p_mean=self.p_mean,
            p_std=self.p_std,
            fdm_warmup_images=self.fdm_warmup_images,
        )


def diffusion_loss(
    sde: LinearDiffusion,
    net: Callable,
    key: jax.Array,
    x0: jax.Array,
    labels: Any = None,
    images: Any = 0,
    cfg: LossConfig = LossConfig(),
) -> jax.Array:
    """The training loss of ``sde`` for the network ``net(x_in, c_noise, labels)`` on clean data ``x0``;
    ``images``: training images seen before this batch (FDM's warm-up clamp)."""
    k_l = jax.random.split(key, 3)[2]  # the recipe uses the first two keys of the same split
    if labels is not None and cfg.label_dropout > 0:
        drop = jax.random.bernoulli(k_l, cfg.label_dropout, (x0.shape[0],))
        labels = jnp.where(drop, cfg.num_classes, labels)
    recipe = cfg.recipe(sde)
    return recipe.loss(sde, Preconditioned(sde, recipe, net, labels), key, x0, images)
