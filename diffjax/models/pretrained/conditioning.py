"""How a published network is fed and what it returns: the maps between diffjax's ``(y, t)`` and its inputs.

Each class here plays the part of a training recipe's ``apply(sde, net, labels, y, t)`` (:mod:`diffjax.diffusions.
recipes`): it returns the model's raw prediction of kind ``prediction``, so that
:class:`diffjax.models.precond.Preconditioned` turns it into a :class:`~diffjax.prediction.Model` of any diffjax
solver.

* :class:`EDMDenoiser` — the four preconditionings of Karras et al. (2022),
  ``D(x̃; σ) = c_skip x̃ + c_out F(c_in x̃, c_noise, labels)``, evaluated at ``x̃ = y/α(t)``, ``σ = σ(t)/α(t)``, so the
  denoiser is an x0-model of *any* scalar diffusion:

  ==========  ======================  ==========  ====================  ===============================================
  kind        c_skip                  c_out       c_in                  c_noise
  ==========  ======================  ==========  ====================  ===============================================
  ``vp``      1                       −σ          1/√(σ²+1)             (M−1)·t_VP(σ)
  ``ve``      1                       σ           1                     ln(σ/2)
  ``iddpm``   1                       −σ          1/√(σ²+1)             M − 1 − argmin_j |u_j − σ|  (*)
  ``edm``     σ_d²/(σ²+σ_d²)          σσ_d/√(σ²+σ_d²)  1/√(σ²+σ_d²)     ¼ ln σ
  ==========  ======================  ==========  ====================  ===============================================

  with ``t_VP(σ) = (√(β_min² + 2β_d ln(1+σ²)) − β_min)/β_d``; (*) the network's first C output channels.

  The ``ve`` form is also score_sde's NCSN++ on data in [0, 1] (its network centres the input, ``2x − 1``, embeds
  ``log σ_[0,1] = ln(σ/2)`` and returns the score divided by … σ): with data in [−1, 1] its score is ``F/σ``.
* :class:`DiscreteStep` — a DDPM network fed the step index ``N·t − 1`` of a :class:`~diffjax.diffusions.DiscreteVP`
  (diffusers' DDPM-family models, score_sde's discrete DDPM++), predicting ε, v or x0.
* :class:`UnitIntervalVE` — diffusers' score-SDE VE models: data in [0, 1] and the network's timestep is σ there;
  the network returns that space's score. With data in [−1, 1]: ``s(y) = ½ net((y + 1)/2, σ(t)/2)``.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ...diffusions.recipes import _bcast, _labels_of, edm_preconditioning

EDM_KINDS = ("vp", "ve", "iddpm", "edm")


@dataclasses.dataclass(frozen=True)
class EDMDenoiser:
    """EDM's preconditioned denoiser (module docstring) as an x0-model on any scalar diffusion."""

    kind: str = "edm"
    sigma_data: float = 0.5
    beta_d: float = 19.9
    beta_min: float = 0.1
    M: int = 1000
    u: tuple = ()  # iDDPM's noise levels u_0 > … > u_M = 0
    channels: int = 0  # iDDPM: the network also returns variances; D uses the first ``channels``
    prediction: str = "x0"
    in_mult: int = 1
    out_mult: int = 1

    def __post_init__(self):
        if self.kind not in EDM_KINDS:
            raise ValueError(f"unknown EDM preconditioning {self.kind!r}; accepted: {EDM_KINDS}")
        if self.kind == "iddpm" and len(self.u) != self.M + 1:
            raise ValueError(f"iDDPM needs its M + 1 = {self.M + 1} noise levels u; got {len(self.u)}")

    def vp_time(self, sigma):
        """The VP time of noise level σ: ``(√(β_min² + 2β_d ln(1+σ²)) − β_min)/β_d``."""
        return (jnp.sqrt(self.beta_min**2 + 2 * self.beta_d * jnp.log1p(sigma**2)) - self.beta_min) / self.beta_d

    def coefficients(self, sigma):
        """``(c_skip, c_out, c_in, c_noise)`` at noise level σ (float32, as the original)."""
        sigma = jnp.asarray(sigma, jnp.float32)
        if self.kind == "edm":
            return edm_preconditioning(sigma, self.sigma_data)
        if self.kind == "ve":
            return jnp.ones_like(sigma), sigma, jnp.ones_like(sigma), jnp.log(0.5 * sigma)
        c_in = 1.0 / jnp.sqrt(sigma**2 + 1.0)
        if self.kind == "vp":
            return jnp.ones_like(sigma), -sigma, c_in, (self.M - 1) * self.vp_time(sigma)
        u = jnp.asarray(self.u, jnp.float32)
        index = jnp.argmin(jnp.abs(sigma[..., None] - u), axis=-1)
        return jnp.ones_like(sigma), -sigma, c_in, (self.M - 1 - index).astype(jnp.float32)

    def denoise(self, net, labels, x, sigma):
        """``D(x; σ)`` for EDM-scaled ``x`` (``(B, …)``) and σ (scalar or ``(B,)``)."""
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        b = lambda c: _bcast(c, x)
        f = net(b(c_in) * x, _labels_of(c_noise, x), labels)
        if self.channels:
            f = f[..., : self.channels]
        return b(c_skip) * x + b(c_out) * f.astype(jnp.float32)

    def apply(self, sde, net, labels, y, t):
        """x̂0 at ``(y, t)``: ``D(y/α(t); σ(t)/α(t))``."""
        return self.denoise(net, labels, y / _bcast(sde.alpha(t), y), sde.rho(t))


@dataclasses.dataclass(frozen=True)
class DiscreteStep:
    """``net(y, N·t − 1, labels)`` of a DDPM-family network on a :class:`~diffjax.diffusions.DiscreteVP`."""

    prediction: str = "eps"
    in_mult: int = 1
    out_mult: int = 1

    def apply(self, sde, net, labels, y, t):
        """The network's prediction at the step index of ``t``."""
        if not hasattr(sde, "timestep"):
            raise ValueError(
                f"a discrete-step network needs a DiscreteVP diffusion (it maps t to the step index); got {sde.name}"
            )
        return net(y, _labels_of(sde.timestep(t), y), labels)


@dataclasses.dataclass(frozen=True)
class UnitIntervalVE:
    """A score network for data in [0, 1] whose timestep is σ there, on data in [−1, 1] (module docstring)."""

    prediction: str = "score"
    in_mult: int = 1
    out_mult: int = 1

    def apply(self, sde, net, labels, y, t):
        """The score at ``(y, t)`` for data in [−1, 1]."""
        return 0.5 * net(0.5 * (y + 1.0), _labels_of(0.5 * sde.sigma(t), y), labels)
