"""Network → :class:`Model` wrappers, one per diffusion family.

A network is any callable ``net(x_in, c_noise, labels) -> output`` (``labels`` may be None), e.g.
:class:`diffjax.models.MLP` or :class:`diffjax.models.UNet`. ``precondition(sde, net)`` returns the
:class:`Model` the samplers use and the losses train:

* VP / sub-VP (score_sde):   ε-prediction, ``ε̂ = F(x, 999 t)``
* VE (EDM VEPrecond):        ``D = x + σ F(x, ln(σ/2))``
* EDM:                       ``D = c_skip x + c_out F(c_in x, ¼ ln σ)`` (σ_data = 0.5)
* FDM (any base):            the base's ``c_skip, c_out, c_noise`` with ``c_in = s_F`` on ``x̃ = x/s_F``
* Blur:                      ε-prediction in pixels, ``F(x, 999 t)``
* Flow (flow matching):      the flow velocity ``û = F(x, 999 t)`` (the diffusion's ``default_prediction``)
* any other 1×1-block one:   ε-prediction with label ``999 t`` (``dj.diffusions.custom``: scalar or per coordinate);
                             ``prediction='v'`` (VP, Salimans & Ho), ``'velocity'`` or ``'x0'`` instead of ε on
                             scalar diffusions
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


class Preconditioned:
    """``net`` wrapped by its diffusion's preconditioning rule (module docstring): a callable ``(y, t) ->
    prediction`` and a PyTree whose leaves are the network's (and the labels') arrays, so ``dj.sample`` passes a
    new checkpoint of the same network to its compiled sampler without recompiling."""

    def __init__(self, sde: LinearDiffusion, rule: str, net: Callable, labels: Any = None, sigma_data: float = SIGMA_DATA,
                 mixed: bool = True):
        self.sde, self.rule, self.net, self.labels, self.sigma_data, self.mixed = sde, rule, net, labels, sigma_data, mixed

    def _f(self, x, c):
        return self.net(x, c, self.labels)

    def __call__(self, y, t):
        sde, f, rule = self.sde, self._f, self.rule
        b = lambda c: sde.bcast(c, y) if not isinstance(y, tuple) else c
        if rule == "fdm":
            c_skip, c_out, c_in, c_noise = fdm_preconditioning(sde, sde.rho(t), self.sigma_data)
            xt = y / b(sde.alpha(t))  # unscaled x̃; the network sees c_in x̃ = y
            return b(c_skip) * xt + b(c_out) * f(b(c_in) * xt, jnp.broadcast_to(c_noise, y.shape[:1]))
        if rule == "edm":
            c_skip, c_out, c_in, c_noise = edm_preconditioning(sde.rho(t), self.sigma_data)
            return b(c_skip) * y + b(c_out) * f(b(c_in) * y, jnp.broadcast_to(c_noise, y.shape[:1]))
        if rule == "ve":
            sigma = sde.sigma(t)
            return y + b(sigma) * f(y, jnp.broadcast_to(jnp.log(0.5 * sigma), y.shape[:1]))
        if rule == "eps":
            return f(y, jnp.broadcast_to(999.0 * jnp.asarray(t), y.shape[:1]))
        x, v = y  # phase space (x, v)
        out = f(jnp.concatenate([x, v], axis=-1), jnp.broadcast_to(999.0 * jnp.asarray(t), x.shape[:1]))
        if rule == "cld_eps":
            c = x.shape[-1]
            return (out[..., :c], out[..., c:])
        ell, svv = sde.hsm_scales(t)
        bb = lambda c: c.reshape(c.shape + (1,) * (x.ndim - c.ndim)) if c.ndim else c
        s_v = -bb(ell) * out
        if self.mixed:
            s_v = s_v - v / bb(svv)
        return (jnp.zeros_like(x), s_v)


jax.tree_util.register_pytree_node(
    Preconditioned,
    lambda p: ((p.net, p.labels), (p.sde, p.rule, p.sigma_data, p.mixed)),
    lambda aux, ch: Preconditioned(aux[0], aux[1], ch[0], ch[1], aux[2], aux[3]),
)


PREDICTIONS = ("eps", "v", "velocity", "x0")


def precondition(sde: LinearDiffusion, net: Callable, labels: Any = None, cld_param: str = "eps",
                 mixed: bool = True, sigma_data: float = SIGMA_DATA, prediction: str | None = None) -> Model:
    """Wrap ``net`` as the model of ``sde`` (see the module docstring); ``labels`` conditions a class model.
    ``prediction`` (1×1-block diffusions without their own preconditioning) names what ``net(x, 999 t)``
    predicts; default: the diffusion's ``default_prediction`` (ε unless it says otherwise)."""
    if prediction not in (None, "") + PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; accepted: {list(PREDICTIONS)}")
    wrap = lambda rule, kind: Model(sde, Preconditioned(sde, rule, net, labels, sigma_data, mixed), kind)
    if isinstance(sde, FDM):
        return wrap("fdm", "x0")
    if isinstance(sde, EDM):
        return wrap("edm", "x0")
    if isinstance(sde, VE):
        return wrap("ve", "x0")
    if sde.block_size == 1:  # VP, blurring, flow matching and user-defined diffusions with 1×1 blocks
        return wrap("eps", prediction or getattr(sde, "default_prediction", "eps"))
    if isinstance(sde, PhaseSpace):  # CLD and user-defined (x, v) diffusions
        if cld_param == "eps":
            return wrap("cld_eps", "eps")
        if cld_param == "hsm":
            return wrap("cld_hsm", "score")
        raise ValueError(f"cld_param must be 'eps' or 'hsm', got {cld_param!r}")
    raise ValueError(f"no preconditioning known for {sde.name}; wrap the network with dj.models.Model yourself")


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
