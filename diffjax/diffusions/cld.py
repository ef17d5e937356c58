"""Critically-damped Langevin diffusion (Dockhorn et al. 2022): state ``(x, v)``, 2×2 blocks."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .base import LinearDiffusion, check_positive, diffusion_dataclass


def _exp_tail3(k):
    """``e^κ − 1 − κ − κ²/2`` without cancellation (series below κ = 0.1, ``expm1`` above)."""
    series = k**3 / 6 * (1 + k / 4 * (1 + k / 5 * (1 + k / 6 * (1 + k / 7 * (1 + k / 8)))))
    direct = jnp.expm1(k) - k - 0.5 * k**2
    return jnp.where(k < 0.1, series, direct)


class PhaseSpace(LinearDiffusion):
    """Diffusions on the phase space ``(x, v)`` with 2×2 blocks shared by every pixel (CLD, user-defined
    Langevin-type processes): the state structure and gDDIM's ``R_t``. Subclasses provide ``gddim_r0()``."""

    block_size = 2

    # ---- state structure -------------------------------------------------------------------
    def to_blocks(self, y):
        x, v = y
        return jnp.stack([x, v], axis=-1)

    def from_blocks(self, yb):
        return (yb[..., 0], yb[..., 1])

    def clean_embedding(self):
        return np.array([1.0, 0.0])

    def data_part(self, y):
        return y[0]

    def state_from_data(self, x):
        return (x, jnp.zeros_like(x))

    def check_state(self, y) -> None:
        if not (isinstance(y, (tuple, list)) and len(y) == 2):
            raise ValueError(
                f"a phase-space state is a pair (x, v) of arrays with the same shape, got {type(y).__name__}"
            )
        if jnp.shape(y[0]) != jnp.shape(y[1]):
            raise ValueError(f"x and v must have the same shape, got {jnp.shape(y[0])} and {jnp.shape(y[1])}")

    def training_recipe(self, prediction=None, cld_param="eps", cld_mixed=True, **options):
        """``cld_param='eps'``: a 2-channel ε for ``K_t = L_t``; ``'hsm'``: hybrid score matching of the velocity
        score (:class:`.recipes.PhaseSpaceRecipe`)."""
        from .recipes import PhaseSpaceRecipe, check_options

        check_options(options, f"{self.name}.training_recipe")
        if prediction not in (None, "", "eps"):
            raise ValueError(
                f"{self.name} trains ε (cld_param='eps') or the velocity score (cld_param='hsm'); "
                f"prediction={prediction!r} is not offered"
            )
        return PhaseSpaceRecipe(param=cld_param, mixed=cld_mixed)

    def hsm_scales(self, t):
        """``(ℓ_t, Σ_vv(t))`` for hybrid score matching: with the Cholesky factor ``L_t`` of Σ_t, the v-score of
        the perturbation kernel is ``−ℓ_t z_v`` with ``ℓ_t = 1/L_vv = (Σ_vv − Σ_xv²/Σ_xx)^{−1/2}``."""
        c = self.cov_block(t)
        xx, xv, vv = c[..., 0, 0], c[..., 0, 1], c[..., 1, 1]
        return 1.0 / jnp.sqrt(vv - xv**2 / xx), vv

    # ---- gDDIM's R_t (no closed form): one float64 implicit solve, cached per diffusion ----------------
    def gddim_factor(self, ts) -> np.ndarray:
        """``R_t`` from ``dR/dt = (F + ½GGᵀΣ_t⁻¹)R``, ``R_0 = gddim_r0()``, solved once in float64 with Radau
        (rtol 1e-11; stiff near t = 0) and evaluated from its dense output."""
        sol = _r_solution(self)
        ts = np.asarray(ts, np.float64)
        return sol(ts.ravel()).T.reshape(ts.shape + (2, 2))


@diffusion_dataclass
class CLD(PhaseSpace):
    """CLD: per pixel ``d(x, v) = β(t) [[0, M⁻¹], [−1, −ΓM⁻¹]] (x, v) dt + [[0, 0], [0, √(2Γβ)]] dW`` with
    critical damping ``Γ² = 4M`` and ``β(t) = beta0 + beta1·t``.

    Initial state ``x_0 = data``, ``v_0 ~ N(0, γM)``; the numerical floor ``eps_num`` is added to the initial
    covariance and propagated (gDDIM's convention, used everywhere here: kernels, test bed, losses, gDDIM):
    ``Σ_0 = diag(eps_num, γM + eps_num)``. Ψ and Σ_t are closed-form (critical damping); Σ_xx is evaluated with a
    cancellation-free series for small times. Prior ``N(0, I) ⊗ N(0, M I)``.

    The state is the tuple ``(x, v)`` of two arrays of the data's shape; ``dj.sample`` returns ``x``.
    """

    beta0: float = 4.0
    beta1: float = 0.0
    m_inv: float = 4.0
    gamma: float = 0.04
    eps_num: float = 1e-6
    T: float = 1.0
    t_min: float = 1e-3
    t_eps: float = 1e-5

    block_size = 2

    def __post_init__(self):
        check_positive("beta0", self.beta0)
        check_positive("m_inv", self.m_inv)
        check_positive("gamma", self.gamma)
        check_positive("T", self.T)
        check_positive("t_min", self.t_min)
        if not self.beta1 >= 0:
            raise ValueError(f"beta1 must be >= 0, got {self.beta1}")
        if not self.eps_num > 0:  # Σ_0 would be singular: the x-marginal at t = 0 has no density
            raise ValueError(f"eps_num must be > 0 (the floor that keeps Σ_0 invertible), got {self.eps_num}")
        if not self.t_min < self.T:
            raise ValueError(f"t_min must be < T={self.T}, got {self.t_min}")

    # ---- hyperparameters -------------------------------------------------------------------
    @property
    def mass(self) -> float:
        """``M = 1/M⁻¹`` (CLD's mass)."""
        return 1.0 / self.m_inv

    @property
    def damping(self) -> float:
        """Γ = 2√M (critical damping)."""
        return 2.0 * math.sqrt(self.mass)

    @property
    def initial_cov(self) -> tuple[float, float]:
        """``(ε_num, γM + ε_num)``: the initial variances of x and v."""
        return self.eps_num, self.gamma * self.mass + self.eps_num

    def beta(self, t):
        """``β(t) = β₀ + β₁t``."""
        return self.beta0 + self.beta1 * jnp.asarray(t)

    def integrated_beta(self, t):
        """``∫_0^t β = β₀t + ½β₁t²``."""
        t = jnp.asarray(t)
        return self.beta0 * t + 0.5 * self.beta1 * t**2

    def drift_block(self, t):
        b = self.beta(t)[..., None, None]
        a = jnp.array([[0.0, self.m_inv], [-1.0, -self.damping * self.m_inv]])
        return b * a

    def diffusion_block(self, t):
        g = jnp.sqrt(2.0 * self.damping * self.beta(t))
        z = jnp.zeros_like(g)
        return jnp.stack([jnp.stack([z, z], -1), jnp.stack([z, g], -1)], -2)

    def transition_block(self, t, s):
        """``Ψ(t,s) = e^{−2b/Γ} [[1 + 2b/Γ, 4b/Γ²], [−b, 1 − 2b/Γ]]``, ``b = B(t) − B(s)`` (any sign)."""
        b = self.integrated_beta(t) - self.integrated_beta(s)
        g = self.damping
        e = jnp.exp(-2.0 * b / g)
        row0 = jnp.stack([1 + 2 * b / g, 4 * b / g**2], -1)
        row1 = jnp.stack([-b, 1 - 2 * b / g], -1)
        return e[..., None, None] * jnp.stack([row0, row1], -2)

    def cov_block(self, t):
        """Σ_t from ``Σ_0 = diag(σ_x0, σ_v0)``, ``b = B(t)``, ``κ = 4b/Γ``."""
        sx, sv = self.initial_cov
        b = self.integrated_beta(t)
        g = self.damping
        k = 4.0 * b / g
        e = jnp.exp(-k)
        xx = e * (_exp_tail3(k) + sx * (1 + k + k**2 / 4) + (k**2 / g**2) * sv)
        xv = e * (-b * sx + (4 * b / g**2) * sv - (2 * b**2 / g) * (sx - 2) - (8 * b**2 / g**3) * sv)
        vv = e * ((g**2 / 4) * jnp.expm1(k) + g * b + sv * (1 - k + k**2 / 4) + b**2 * (sx - 2))
        return jnp.stack([jnp.stack([xx, xv], -1), jnp.stack([xv, vv], -1)], -2)

    def prior_cov_block(self):
        return jnp.array([[1.0, 0.0], [0.0, self.mass]])

    def gddim_r0(self) -> np.ndarray:
        """``R_0 = diag(√eps_num, √(γM + eps_num))`` (the floored Σ_0)."""
        sx, sv = self.initial_cov
        return np.diag([math.sqrt(sx), math.sqrt(sv)])


@functools.lru_cache(maxsize=16)
def _r_solution(sde: "PhaseSpace"):
    from scipy.integrate import solve_ivp

    def _coefs(t):
        f, g, c = sde.drift_block(t), sde.diffusion_block(t), sde.cov_block(t)
        return f + 0.5 * (g @ g.T) @ jnp.linalg.inv(c)

    with jax.enable_x64(True):
        compiled = jax.jit(_coefs).lower(jnp.float64(0.5)).compile()

    def coefs(t):
        with jax.enable_x64(True):
            return np.asarray(compiled(np.float64(t)))

    def rhs(t, r):
        return (coefs(t) @ r.reshape(2, 2)).ravel()

    def jac(t, r):
        return np.kron(coefs(t), np.eye(2))

    r0 = np.asarray(sde.gddim_r0(), np.float64).ravel()
    out = solve_ivp(rhs, (0.0, sde.T), r0, method="Radau", jac=jac, rtol=1e-11, atol=1e-13, dense_output=True)
    if not out.success:
        raise RuntimeError(f"the R_t solve for {sde!r} failed: {out.message}")
    return out.sol
