"""Network → :class:`Model` wrappers, one per diffusion family (SDES.md §1.4–6.4).

A network is any callable ``net(x_in, c_noise, labels) -> output`` (``labels`` may be None), e.g.
:class:`diffjax.models.MLP` or :class:`diffjax.models.UNet`. ``precondition(sde, net)`` returns the
:class:`Model` the samplers use and the losses train:

* VP / sub-VP (score_sde):   ε-prediction, ``ε̂ = F(x, 999 t)``
* VE (EDM VEPrecond):        ``D = x + σ F(x, ln(σ/2))``
* EDM:                       ``D = c_skip x + c_out F(c_in x, ¼ ln σ)`` (σ_data = 0.5)
* FDM (any base):            the base's ``c_skip, c_out, c_noise`` with ``c_in = s_F`` on ``x̃ = x/s_F``
* Blur:                      ε-prediction in pixels, ``F(x, 999 t)``
* any other 1×1-block one:   ε-prediction with label ``999 t`` (``dj.diffusions.custom``: scalar or per coordinate)
* CLD / phase space:         ``'eps'``: 2-channel ε with ``K_t = L_t`` (any sampler, gDDIM included);
                             ``'hsm'``: velocity-only output ``s_v = −ℓ_t F(u, 999 t)`` (+ ``−v/Σ_vv`` with
                             ``mixed``), CLD-SGM's hybrid score matching; the x-score is not modelled (set to 0,
                             which the reverse dynamics never use since ``G`` acts on v only)
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ..diffusions import EDM, FDM, VE
from ..diffusions.base import LinearDiffusion
from ..diffusions.cld import PhaseSpace
from .parameterization import Model, edm_preconditioning, fdm_preconditioning

SIGMA_DATA = 0.5


def _labelled(net: Callable, labels: Any) -> Callable:
    return lambda x, c: net(x, c, labels)


def precondition(sde: LinearDiffusion, net: Callable, labels: Any = None, cld_param: str = "eps",
                 mixed: bool = True, sigma_data: float = SIGMA_DATA) -> Model:
    """Wrap ``net`` as the model of ``sde`` (see the module docstring); ``labels`` conditions a class model."""
    f = _labelled(net, labels)
    if isinstance(sde, FDM):
        def fn(y, t):
            sigma = sde.rho(t)
            c_skip, c_out, c_in, c_noise = fdm_preconditioning(sde, sigma, sigma_data)
            b = lambda c: sde.bcast(c, y)
            xt = y / b(sde.alpha(t))  # unscaled x̃; the network sees c_in x̃ = y
            return b(c_skip) * xt + b(c_out) * f(b(c_in) * xt, jnp.broadcast_to(c_noise, y.shape[:1]))
        return Model(sde, fn, "x0")
    if isinstance(sde, EDM):
        def fn(y, t):
            c_skip, c_out, c_in, c_noise = edm_preconditioning(sde.rho(t), sigma_data)
            b = lambda c: sde.bcast(c, y)
            return b(c_skip) * y + b(c_out) * f(b(c_in) * y, jnp.broadcast_to(c_noise, y.shape[:1]))
        return Model(sde, fn, "x0")
    if isinstance(sde, VE):
        def fn(y, t):
            sigma = sde.sigma(t)
            return y + sde.bcast(sigma, y) * f(y, jnp.broadcast_to(jnp.log(0.5 * sigma), y.shape[:1]))
        return Model(sde, fn, "x0")
    if sde.block_size == 1:  # VP, blurring and user-defined diffusions with 1×1 blocks
        return Model(sde, lambda y, t: f(y, jnp.broadcast_to(999.0 * jnp.asarray(t), y.shape[:1])), "eps")
    if isinstance(sde, PhaseSpace):  # CLD and user-defined (x, v) diffusions
        def net_on_state(u, t):
            x, v = u
            return f(jnp.concatenate([x, v], axis=-1), jnp.broadcast_to(999.0 * jnp.asarray(t), x.shape[:1]))

        if cld_param == "eps":
            def fn(u, t):
                out = net_on_state(u, t)
                c = u[0].shape[-1]
                return (out[..., :c], out[..., c:])
            return Model(sde, fn, "eps")
        if cld_param == "hsm":
            def fn(u, t):
                ell, svv = sde.hsm_scales(t)
                b = lambda c: c.reshape(c.shape + (1,) * (u[0].ndim - c.ndim)) if c.ndim else c
                s_v = -b(ell) * net_on_state(u, t)
                if mixed:
                    s_v = s_v - u[1] / b(svv)
                return (jnp.zeros_like(u[0]), s_v)
            return Model(sde, fn, "score")
        raise ValueError(f"cld_param must be 'eps' or 'hsm', got {cld_param!r}")
    raise ValueError(f"no preconditioning known for {sde.name}; wrap the network with dj.models.Model yourself")


def guided(sde: LinearDiffusion, net: Callable, labels: Any, scale: float, num_classes: int, **kw) -> Model:
    """Classifier-free guidance (Ho & Salimans 2022): ``ε̂ = (1 + w) ε̂(x | c) − w ε̂(x | ∅)`` (the null label is
    ``num_classes``); ``w = 0`` is the conditional model."""
    cond = precondition(sde, net, labels, **kw)
    uncond = precondition(sde, net, jnp.full(jnp.shape(labels), num_classes, jnp.int32), **kw)

    def fn(y, t):
        return jax.tree.map(lambda a, b: (1 + scale) * a - scale * b, cond.eps(y, t), uncond.eps(y, t))

    return Model(sde, fn, "eps")
