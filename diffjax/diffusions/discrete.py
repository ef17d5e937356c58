"""Discrete-time VP (DDPM) as a continuous diffusion: ``α(t)`` interpolates the trained ``ᾱ_i`` exactly.

A DDPM is trained on N steps with ``x_i = √ᾱ_i x_0 + √(1 − ᾱ_i) ε``, ``ᾱ_i = Π_{j≤i}(1 − β_j)``, i = 0…N−1. As in
DPM-Solver's treatment of discrete models (Lu et al. 2022), time ``t_i = (i + 1)/N`` carries step i and
``log α(t)`` is the piecewise-linear interpolation of ``(t_i, ½ log ᾱ_i)`` (extended linearly below ``t_0 = 1/N``);
``σ = √(1 − α²)``. The network takes the step index, fractional between grid points: ``N·t − 1``
(:meth:`DiscreteVP.timestep`), which is the trained integer i at ``t_i``.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from .base import ScalarDiffusion, diffusion_dataclass


def betas(
    schedule: str, n: int, beta_start: float = 1e-4, beta_end: float = 0.02, max_beta: float = 0.999
) -> np.ndarray:
    """The β_i of a DDPM schedule (float64): 'linear' (Ho et al.), 'scaled_linear' (linear in √β, latent diffusion),
    'squaredcos_cap_v2' (Nichol & Dhariwal's cosine ``ᾱ(s) = cos²((s + 0.008)/1.008 · π/2)``, β capped at
    ``max_beta``)."""
    n = int(n)
    if n < 2:
        raise ValueError(f"a discrete schedule needs at least 2 steps, got {n}")
    if schedule == "linear":
        return np.linspace(beta_start, beta_end, n, dtype=np.float64)
    if schedule == "scaled_linear":
        return np.linspace(beta_start**0.5, beta_end**0.5, n, dtype=np.float64) ** 2
    if schedule == "squaredcos_cap_v2":
        abar = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.array([min(1 - abar((i + 1) / n) / abar(i / n), max_beta) for i in range(n)], np.float64)
    raise ValueError(f"unknown beta schedule {schedule!r}; accepted: 'linear', 'scaled_linear', 'squaredcos_cap_v2'")


@diffusion_dataclass
class DiscreteVP(ScalarDiffusion):
    """VP diffusion through the ``alphas_cumprod`` ``ᾱ_0 > … > ᾱ_{N−1}`` of a discrete DDPM (module docstring).

    ``T = 1`` (step N − 1), ``t_min = 1/N`` (step 0) by default. Build it with :meth:`from_schedule` (diffusers'
    ``beta_schedule`` names) or :meth:`from_betas`.
    """

    alphas_cumprod: tuple = ()
    t_min: float | None = None
    T: float = 1.0

    def __post_init__(self):
        ac = np.asarray(self.alphas_cumprod, np.float64)
        if ac.ndim != 1 or ac.size < 2:
            raise ValueError(f"alphas_cumprod must be a sequence of at least 2 values, got shape {ac.shape}")
        if not (np.all(np.isfinite(ac)) and np.all(ac > 0) and np.all(ac < 1) and np.all(np.diff(ac) < 0)):
            raise ValueError("alphas_cumprod must decrease strictly inside (0, 1)")
        if self.t_min is None:
            object.__setattr__(self, "t_min", 1.0 / ac.size)
        if not 0 < self.t_min < self.T <= 1.0:
            raise ValueError(f"need 0 < t_min < T <= 1; got t_min={self.t_min}, T={self.T}")

    @classmethod
    def from_betas(cls, betas_, **kw) -> "DiscreteVP":
        """From the β_i of the trained steps."""
        b = np.asarray(betas_, np.float64)
        if b.ndim != 1 or not np.all((b > 0) & (b < 1)):
            raise ValueError("betas must be a sequence of values in (0, 1)")
        return cls(tuple(float(a) for a in np.cumprod(1.0 - b)), **kw)

    @classmethod
    def from_schedule(
        cls,
        schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        num_train_timesteps: int = 1000,
        **kw,
    ) -> "DiscreteVP":
        """From a named schedule (:func:`betas`); the defaults are DDPM's (linear 1e-4 → 0.02, 1000 steps)."""
        return cls.from_betas(betas(schedule, num_train_timesteps, beta_start, beta_end), **kw)

    @property
    def num_steps(self) -> int:
        """N, the number of trained steps."""
        return len(self.alphas_cumprod)

    @property
    def t_eps(self) -> float:
        """The smallest training time: ``t_min`` (step 0)."""
        return float(self.t_min)

    @functools.cached_property
    def _log_alpha_table(self) -> np.ndarray:
        return 0.5 * np.log(np.asarray(self.alphas_cumprod, np.float64))

    def timestep(self, t):
        """The network's step input ``N·t − 1`` (the trained index i at ``t_i = (i + 1)/N``)."""
        return self.num_steps * jnp.asarray(t) - 1.0

    def log_alpha(self, t):
        t = jnp.asarray(t)
        table = jnp.asarray(self._log_alpha_table, t.dtype if jnp.issubdtype(t.dtype, jnp.floating) else None)
        u = self.timestep(t)  # continuous step index
        i0 = jnp.clip(jnp.floor(u), 0, self.num_steps - 2).astype(jnp.int32)
        w = u - i0
        return (1.0 - w) * table[i0] + w * table[i0 + 1]

    def sigma(self, t):
        return jnp.sqrt(-jnp.expm1(2.0 * self.log_alpha(t)))

    def t_of_rho(self, rho):
        target = -0.5 * jnp.log1p(jnp.asarray(rho) ** 2)  # log α of the noise-to-signal ratio ρ
        table = jnp.asarray(self._log_alpha_table, target.dtype)
        # the table decreases: find i0 with table[i0] >= target > table[i0 + 1], extending the end segments
        i0 = jnp.clip(jnp.sum(table[None, :] >= jnp.reshape(target, (-1, 1)), axis=-1) - 1, 0, self.num_steps - 2)
        i0 = jnp.reshape(i0, jnp.shape(target))
        u = i0 + (target - table[i0]) / (table[i0 + 1] - table[i0])
        return (u + 1.0) / self.num_steps

    def __repr__(self):
        return f"DiscreteVP(N={self.num_steps}, ᾱ_0={self.alphas_cumprod[0]:.6g}, ᾱ_N-1={self.alphas_cumprod[-1]:.6g})"
