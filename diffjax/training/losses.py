"""Training losses, each built on the diffusion's own ``perturb``.

``diffusion_loss(sde, net, key, x0, labels, step, cfg)`` picks the published objective of the diffusion:

* VP / sub-VP, Blur, CLD (``cld_param='eps'``): ε-MSE ``E_t E‖ε̂(u_t, t) − z‖²`` with ``u_t = Ψ ū_0 + L_t z``,
  ``t ~ U[t_eps, T]`` (= DSM with weight Σ_t). With ``prediction='v'`` (Salimans & Ho) the target is
  ``v = α z − σ x_0``; with ``'velocity'`` it is ``α̇ x_0 + σ̇ z``.
* Flow (flow matching): ``E‖û(x_t, t) − (z − x_0)‖²``, ``x_t = (1 − t) x_0 + t z``, ``t ~ U[t_eps, T]``.
* EDM: ``E λ(σ)‖D(x_0 + σ z; σ) − x_0‖²``, ``ln σ ~ N(P_mean, P_std²)``, ``λ = 1/c_out²``.
* VE: the same D-loss with ``λ = 1/σ²`` (= ``‖σ s + z‖²``) and ``t ~ U[t_eps, T]`` (log-uniform σ).
* FDM: the base's σ distribution and λ, on FDM's scaled sample, with the warm-up clamp
  ``λ ← min(λ, 5·100^{n/W})`` after n training images (W = ``fdm_warmup_images``; counted in images of the
  global batch and restored on resume, unlike the reference code's per-process loss-call counter). By default W
  ends where the official recipe's does relative to its learning-rate ramp (``FDM.loss_warmup_fraction`` of the
  ramp's images: 1.024 % for EDM-FDM, 2.048 % for VP/VE-FDM).
* CLD (``cld_param='hsm'``): hybrid score matching, reweighted-v2: ``E‖s_v/(−ℓ_t) − z_v‖²``.

Losses are averaged over dimensions (scale-free across data sizes). Classifier-free guidance training:
``label_dropout`` replaces a label by the null class ``num_classes`` with that probability.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ..diffusions import EDM, FDM, VE
from ..diffusions.cld import PhaseSpace
from ..diffusions.base import LinearDiffusion
from ..models.precond import SIGMA_DATA, precondition


@dataclasses.dataclass(frozen=True)
class LossConfig:
    p_mean: float = -1.2  # EDM / EDM-FDM log-normal σ
    p_std: float = 1.2
    sigma_data: float = SIGMA_DATA
    cld_param: str = "eps"  # 'eps' (K = L, 2-channel ε) or 'hsm' (velocity-only, CLD-SGM)
    cld_mixed: bool = True
    fdm_warmup_images: float = -1.0  # W: images until the clamp 5·100^{n/W} reaches 500; < 0: derived (see above); 0: off
    prediction: str = ""  # scalar ε-family diffusions: 'eps', 'v', 'velocity' or 'x0' ('' = the diffusion's default)
    label_dropout: float = 0.0  # classifier-free guidance
    num_classes: int = 0


def _mean_sq(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    per = [jnp.mean(l.reshape(l.shape[0], -1).astype(jnp.float32) ** 2, axis=1) for l in leaves]
    return sum(per) / len(per)


def _uniform_t(key, sde, n):
    lo = float(getattr(sde, "t_eps", sde.t_min))
    return jax.random.uniform(key, (n,), minval=lo, maxval=sde.T)


def fdm_weight_cap(images: Any, warmup_images: float) -> jax.Array:
    """FDM's warm-up clamp ``c_n = 5·100^{n/W}`` after n training images (no clamp once ``c_n ≥ 500``, or W = 0)."""
    if warmup_images <= 0:
        return jnp.asarray(jnp.inf)
    c = 5.0 * 100.0 ** (jnp.asarray(images, jnp.float32) / warmup_images)
    return jnp.where(c >= 500.0, jnp.inf, c)


def _sample_sigma_t(key, sde, n, cfg: LossConfig):
    """(t, σ) per sample for the D-loss families."""
    base = sde.base if isinstance(sde, FDM) else ("edm" if isinstance(sde, EDM) else "ve")
    if base == "edm":
        sigma = jnp.exp(cfg.p_mean + cfg.p_std * jax.random.normal(key, (n,)))
        lo, hi = (0.002, 80.0) if isinstance(sde, FDM) else (sde.sigma_min, sde.sigma_max)
        sigma = jnp.clip(sigma, lo, hi)  # keeps t inside the diffusion's range (the reference code does not)
        return sde.t_of_rho(sigma), sigma
    if base == "ve" and isinstance(sde, FDM):
        sigma = jnp.exp(jax.random.uniform(key, (n,), minval=jnp.log(0.02), maxval=jnp.log(100.0)))
        return sde.t_of_rho(sigma), sigma
    t = _uniform_t(key, sde, n)  # VE (score_sde), VP-FDM (σ_VP(t), t ~ U[1e-5, 1])
    return t, sde.rho(t)


def diffusion_loss(sde: LinearDiffusion, net: Callable, key: jax.Array, x0: jax.Array, labels: Any = None,
                   images: Any = 0, cfg: LossConfig = LossConfig()) -> jax.Array:
    """The training loss of ``sde`` for the network ``net(x_in, c_noise, labels)`` on clean data ``x0``;
    ``images``: training images seen before this batch (FDM's warm-up clamp)."""
    n = x0.shape[0]
    k_t, k_z, k_l = jax.random.split(key, 3)
    if labels is not None and cfg.label_dropout > 0:
        drop = jax.random.bernoulli(k_l, cfg.label_dropout, (n,))
        labels = jnp.where(drop, cfg.num_classes, labels)
    model = precondition(sde, net, labels, cld_param=cfg.cld_param, mixed=cfg.cld_mixed, sigma_data=cfg.sigma_data,
                         prediction=cfg.prediction or None)
    if isinstance(sde, (EDM, VE, FDM)):
        t, sigma = _sample_sigma_t(k_t, sde, n, cfg)
        u, _ = sde.perturb(k_z, x0, t)
        d = model.x0(u, t)
        base = sde.base if isinstance(sde, FDM) else ("edm" if isinstance(sde, EDM) else "ve")
        if base == "edm":
            sd2 = cfg.sigma_data**2
            lam = (sigma**2 + sd2) / (sigma * cfg.sigma_data) ** 2
        else:
            lam = 1.0 / sigma**2
        if isinstance(sde, FDM):
            if cfg.fdm_warmup_images < 0:
                raise ValueError("fdm_warmup_images < 0 means 'derive from the learning-rate ramp', which the Trainer "
                                 "does; calling the loss directly, give it in images (0: no clamp)")
            lam = jnp.minimum(lam, fdm_weight_cap(images, cfg.fdm_warmup_images))
        return jnp.mean(lam * _mean_sq(d - x0))
    t = _uniform_t(k_t, sde, n)
    u, z = sde.perturb(k_z, x0, t)
    if isinstance(sde, PhaseSpace) and cfg.cld_param == "hsm":
        ell, _ = sde.hsm_scales(t)
        s_v = model.score(u, t)[1]
        ell = ell.reshape(ell.shape + (1,) * (s_v.ndim - 1))
        return jnp.mean(_mean_sq(s_v / (-ell) - z[1]))
    if model.kind in ("v", "velocity", "x0"):  # a x0 + b z, predicted directly
        a, b = (1.0, 0.0) if model.kind == "x0" else model.pair_coefficients(x0, t)
        return jnp.mean(_mean_sq(model(u, t) - (a * x0 + b * z)))
    return jnp.mean(_mean_sq(jax.tree.map(jnp.subtract, model.eps(u, t), z)))
