"""Training recipes: how a network is trained for a diffusion and turned into the diffusion's model.

A recipe (a small frozen dataclass) fixes, for a network ``net(x_in, c_noise, labels)``:

* the preconditioning — ``apply(sde, net, labels, y, t)`` is the model's raw prediction, of kind ``prediction``;
* how training times are drawn (``sample_times``), the regression target and the per-sample loss weight
  (``target_and_weight``), so the loss is ``E_t w(t) ‖prediction(u_t, t) − target‖²`` (averaged over dimensions);
* the network's channel multipliers ``in_mult``/``out_mult`` (CLD's state (x, v) has two channels per pixel).

Every diffusion returns its recipe from ``training_recipe(**options)``; the default (any diffusion with 1×1 blocks)
is :class:`EpsRecipe`. A new diffusion that needs something else overrides that one method in its own file.

Recipes here (the published objectives):

* :class:`EpsRecipe` — ``net(y, 999 t)`` predicts ε (score_sde's VP, blurring, custom diffusions), or ``v = αε − σx0``
  (Salimans & Ho), the flow velocity ``α̇x0 + σ̇ε`` (flow matching) or x0; target ``a x0 + b ε`` accordingly;
  ``t ~ U[t_eps, T]``; weight 1 (ε: denoising score matching with weight Σ_t).
* :class:`EDMRecipe` — Karras et al. (2022): ``D = c_skip y + c_out F(c_in y, ¼ ln σ)``,
  ``ln σ ~ N(P_mean, P_std²)``, weight ``(σ² + σ_d²)/(σ σ_d)²``.
* :class:`VERecipe` — EDM's VE preconditioning ``D = y + σ F(y, ln(σ/2))``, ``t ~ U[t_eps, T]``, weight ``1/σ²``.
* :class:`FDMRecipe` — FDM (Wu et al. 2023): its base's ``c_skip, c_out, c_noise``, σ distribution and weight on
  ``x̃ = y/s_F`` with ``c_in = s_F``, and the warm-up clamp ``min(w, 5·100^{n/W})`` after n training images.
* :class:`PhaseSpaceRecipe` — CLD (Dockhorn et al. 2022): ``'eps'``: a 2-channel ε for ``K_t = L_t``;
  ``'hsm'``: hybrid score matching, the velocity score ``s_v = −ℓ_t F(u, 999 t)`` (``− v/Σ_vv`` with ``mixed``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

SIGMA_DATA = 0.5
PREDICTIONS = ("eps", "v", "velocity", "x0")
# every option a diffusion's training_recipe accepts; None means "the diffusion's own value" (e.g. EDM.sigma_data)
RECIPE_OPTIONS = ("prediction", "sigma_data", "p_mean", "p_std", "cld_param", "cld_mixed", "fdm_warmup_images")


def check_options(options: dict, where: str) -> None:
    """Raise ValueError for option names no recipe knows (a misspelling is an error, not silently ignored)."""
    unknown = sorted(set(options) - set(RECIPE_OPTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown training option(s) {unknown}; accepted: {list(RECIPE_OPTIONS)}")


def _bcast(c, y):
    c = jnp.asarray(c)
    return c if c.ndim == 0 else c.reshape(c.shape + (1,) * (y.ndim - c.ndim))


def _labels_of(c, y):
    return jnp.broadcast_to(c, jax.tree.leaves(y)[0].shape[:1])


def edm_preconditioning(sigma, sigma_data: float = SIGMA_DATA):
    """EDM's ``(c_skip, c_out, c_in, c_noise)`` at noise level σ."""
    sigma = jnp.asarray(sigma)
    sd2 = sigma_data**2
    c_skip = sd2 / (sigma**2 + sd2)
    c_out = sigma * sigma_data / jnp.sqrt(sigma**2 + sd2)
    c_in = 1.0 / jnp.sqrt(sigma**2 + sd2)
    c_noise = 0.25 * jnp.log(sigma)
    return c_skip, c_out, c_in, c_noise


def edm_weight(sigma, sigma_data: float = SIGMA_DATA):
    """EDM's loss weight ``λ(σ) = (σ² + σ_d²)/(σ σ_d)² = 1/c_out²``."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def fdm_weight_cap(images: Any, warmup_images: float) -> jax.Array:
    """FDM's warm-up clamp ``c_n = 5·100^{n/W}`` after n training images (no clamp once ``c_n ≥ 500``, or W = 0)."""
    if warmup_images <= 0:
        return jnp.asarray(jnp.inf)
    c = 5.0 * 100.0 ** (jnp.asarray(images, jnp.float32) / warmup_images)
    return jnp.where(c >= 500.0, jnp.inf, c)


def uniform_times(sde, key, n):
    """``t ~ U[t_eps, T]``."""
    return jax.random.uniform(key, (n,), minval=float(getattr(sde, "t_eps", sde.t_min)), maxval=sde.T)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Base recipe: a network predicting ``prediction`` from ``(y, 999 t)``; subclasses override the parts
    they change (module docstring)."""

    prediction: str = "eps"
    in_mult: int = 1
    out_mult: int = 1

    def apply(self, sde, net: Callable, labels: Any, y, t):
        """The model's raw prediction at ``(y, t)``."""
        return net(y, _labels_of(999.0 * jnp.asarray(t), y), labels)

    def sample_times(self, sde, key, n: int):
        """Training times ``(n,)``."""
        return uniform_times(sde, key, n)

    def target_and_weight(self, sde, x0, z, t, images):
        """The regression target of the prediction and the per-sample weight ``(n,)``."""
        raise NotImplementedError

    def x0_form(self, sde, t):
        """``(c_skip, c_out, c_noise, λ)``: this recipe's model as a denoiser of the unscaled ``x̃ = y/α`` at
        noise level ρ = σ/α, ``D(x̃) = c_skip x̃ + c_out F(c_in x̃, c_noise)``, with its loss weight λ on
        ``‖D − x0‖²`` (what :class:`FDMRecipe` builds on). Recipes without such a form raise."""
        raise ValueError(f"{type(self).__name__} (prediction {self.prediction!r}) has no denoiser form for FDM")

    def loss(self, sde, model_fn: Callable, key, x0, images=0.0):
        """``E w(t) ‖model_fn(u_t, t) − target‖²`` (mean over dimensions, then over the batch)."""
        k_t, k_z, _ = jax.random.split(key, 3)
        t = self.sample_times(sde, k_t, x0.shape[0])
        u, z = sde.perturb(k_z, x0, t)
        target, weight = self.target_and_weight(sde, x0, z, t, images)
        return jnp.mean(weight * mean_sq(jax.tree.map(jnp.subtract, model_fn(u, t), target)))


def mean_sq(tree) -> jax.Array:
    """Per-sample mean of squares over every leaf's non-batch axes (averaged over leaves)."""
    leaves = jax.tree.leaves(tree)
    per = [jnp.mean(l.reshape(l.shape[0], -1).astype(jnp.float32) ** 2, axis=1) for l in leaves]
    return sum(per) / len(per)


@dataclasses.dataclass(frozen=True)
class EpsRecipe(Recipe):
    """ε (default), v, flow velocity or x0 prediction from ``net(y, 999 t)``; ``t ~ U[t_eps, T]``; weight 1."""

    def __post_init__(self):
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.prediction!r}; accepted: {list(PREDICTIONS)}")

    def target_and_weight(self, sde, x0, z, t, images):
        one = jnp.ones(x0.shape[:1])
        if self.prediction == "eps":
            return z, one
        if self.prediction == "x0":
            return x0, one
        if not hasattr(sde, "pair_coefficients"):
            raise ValueError(f"prediction {self.prediction!r} needs a scalar diffusion (α, σ); {sde.name} has none")
        a, b = sde.pair_coefficients(self.prediction, t)
        return _bcast(a, x0) * x0 + _bcast(b, x0) * z, one

    def x0_form(self, sde, t):
        """ε prediction: ``x0 = x̃ − ρ ε̂`` (c_skip 1, c_out −ρ, c_noise 999 t); ``‖ε̂ − ε‖² = ‖D − x0‖²/ρ²``."""
        if self.prediction != "eps":
            return super().x0_form(sde, t)
        rho = sde.rho(t)
        return jnp.ones_like(rho), -rho, 999.0 * jnp.asarray(t), 1.0 / rho**2


@dataclasses.dataclass(frozen=True)
class EDMRecipe(Recipe):
    """Karras et al.'s preconditioning, log-normal σ and weight (x0 prediction)."""

    prediction: str = "x0"
    sigma_data: float = SIGMA_DATA
    p_mean: float = -1.2
    p_std: float = 1.2

    def apply(self, sde, net, labels, y, t):
        c_skip, c_out, c_in, c_noise = edm_preconditioning(sde.rho(t), self.sigma_data)
        b = lambda c: _bcast(c, y)
        return b(c_skip) * y + b(c_out) * net(b(c_in) * y, _labels_of(c_noise, y), labels)

    def sample_times(self, sde, key, n):
        sigma = jnp.exp(self.p_mean + self.p_std * jax.random.normal(key, (n,)))
        with jax.ensure_compile_time_eval():  # constants of the diffusion, also while a train step is traced
            lo, hi = float(sde.rho(sde.t_min)), float(sde.rho(sde.T))
        return sde.t_of_rho(jnp.clip(sigma, lo, hi))  # keeps t inside the diffusion's range

    def target_and_weight(self, sde, x0, z, t, images):
        return x0, edm_weight(sde.rho(t), self.sigma_data)

    def x0_form(self, sde, t):
        """Karras et al.'s c_skip, c_out, c_noise at σ = ρ(t) and weight λ(σ)."""
        rho = sde.rho(t)
        c_skip, c_out, _, c_noise = edm_preconditioning(rho, self.sigma_data)
        return c_skip, c_out, c_noise, edm_weight(rho, self.sigma_data)


@dataclasses.dataclass(frozen=True)
class VERecipe(Recipe):
    """EDM's VE preconditioning ``D = y + σ F(y, ln(σ/2))``; ``t ~ U[t_eps, T]``; weight ``1/σ²``."""

    prediction: str = "x0"

    def apply(self, sde, net, labels, y, t):
        sigma = sde.sigma(t)
        return y + _bcast(sigma, y) * net(y, _labels_of(jnp.log(0.5 * sigma), y), labels)

    def target_and_weight(self, sde, x0, z, t, images):
        return x0, 1.0 / sde.rho(t) ** 2

    def x0_form(self, sde, t):
        """``D = x̃ + σ F(x̃, ln(σ/2))``, weight 1/σ²."""
        rho = sde.rho(t)
        return jnp.ones_like(rho), rho, jnp.log(0.5 * rho), 1.0 / rho**2


@dataclasses.dataclass(frozen=True)
class FDMRecipe(Recipe):
    """FDM over its base (module docstring): the base recipe ``base`` in unscaled coordinates ``x̃ = y/s_F`` —
    its denoiser form (:meth:`Recipe.x0_form`), training times and weight — with ``c_in = s_F`` and the weight
    clamped during the first ``warmup_images`` training images (0: never)."""

    base: Recipe = None
    warmup_images: float = 0.0
    prediction: str = "x0"

    def apply(self, sde, net, labels, y, t):
        c_skip, c_out, c_in, c_noise = fdm_preconditioning(sde, sde.rho(t), self.base)
        b = lambda c: _bcast(c, y)
        xt = y / b(sde.alpha(t))  # unscaled x̃; the network sees c_in x̃ = y
        return b(c_skip) * xt + b(c_out) * net(b(c_in) * xt, _labels_of(c_noise, y), labels)

    def sample_times(self, sde, key, n):
        return self.base.sample_times(sde.base, key, n)

    def target_and_weight(self, sde, x0, z, t, images):
        lam = self.base.x0_form(sde.base, t)[3]
        return x0, jnp.minimum(lam, fdm_weight_cap(images, self.warmup_images))


def fdm_preconditioning(sde, sigma, base_recipe: Recipe | None = None):
    """FDM's ``(c_skip, c_out, c_in, c_noise)`` at the base noise level σ: the base recipe's denoiser form
    (EDM: Karras et al.; VP: ``1, −σ, 999·t(σ)``; VE: ``1, σ, ln(σ/2)``; default: the base's own recipe) with
    ``c_in = s_F(σ)``, so the network sees the FDM-scaled sample ``s_F x̃`` of the unscaled ``x̃ = x/s_F``:
    ``D(x̃; σ) = c_skip x̃ + c_out F_θ(c_in x̃; c_noise)``."""
    if not hasattr(sde, "mean_factor") or not hasattr(sde, "base"):
        raise TypeError(f"fdm_preconditioning needs a dj.FDM diffusion, got {type(sde).__name__}")
    t = sde.t_of_rho(jnp.asarray(sigma))
    c_skip, c_out, c_noise, _ = (base_recipe or sde.base.training_recipe()).x0_form(sde.base, t)
    return c_skip, c_out, sde.mean_factor(t), c_noise


@dataclasses.dataclass(frozen=True)
class PhaseSpaceRecipe(Recipe):
    """CLD-type (x, v) states: ``param='eps'`` (2-channel ε, ``K_t = L_t``) or ``'hsm'`` (velocity score)."""

    param: str = "eps"
    mixed: bool = True
    in_mult: int = 2

    def __post_init__(self):
        if self.param not in ("eps", "hsm"):
            raise ValueError(f"cld_param must be 'eps' or 'hsm', got {self.param!r}")
        object.__setattr__(self, "prediction", "eps" if self.param == "eps" else "score")
        object.__setattr__(self, "out_mult", 2 if self.param == "eps" else 1)

    def apply(self, sde, net, labels, y, t):
        x, v = y
        out = net(jnp.concatenate([x, v], axis=-1), _labels_of(999.0 * jnp.asarray(t), x), labels)
        if self.param == "eps":
            c = x.shape[-1]
            return (out[..., :c], out[..., c:])
        ell, svv = sde.hsm_scales(t)
        s_v = -_bcast(ell, x) * out
        if self.mixed:
            s_v = s_v - v / _bcast(svv, x)
        return (jnp.zeros_like(x), s_v)  # the x-score is not modelled: G acts on v only

    def loss(self, sde, model_fn, key, x0, images=0.0):
        if self.param == "eps":
            return super().loss(sde, model_fn, key, x0, images)
        k_t, k_z, _ = jax.random.split(key, 3)  # hybrid score matching, reweighted: E‖s_v/(−ℓ_t) − z_v‖²
        t = self.sample_times(sde, k_t, x0.shape[0])
        u, z = sde.perturb(k_z, x0, t)
        ell, _ = sde.hsm_scales(t)
        s_v = model_fn(u, t)[1]
        return jnp.mean(mean_sq(s_v / (-_bcast(ell, s_v)) - z[1]))

    def target_and_weight(self, sde, x0, z, t, images):
        return z, jnp.ones(x0.shape[:1])
