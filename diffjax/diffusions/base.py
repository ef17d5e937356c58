"""The shared linear-Gaussian algebra behind every diffusion.

Every forward process here is a linear SDE ``du = F(t) u dt + G(t) dW`` whose operators are block-diagonal in
a fixed orthogonal basis (identity, or a DCT over the image axes) with 1×1 or 2×2 blocks that act on the
trailing *block axis* of the state written in that basis. A state in block form has shape
``(B, *data_shape, k)``; a coefficient has shape ``t.shape + coef_shape + (k, k)``, where ``coef_shape`` is
``()`` when every coordinate shares the block (VP, VE, EDM, CLD) or a data-shaped, broadcastable shape when
coefficients vary per coordinate (blurring, per frequency).

Subclasses give the closed forms: ``drift_block`` F(t), ``diffusion_block`` G(t), ``transition_block`` Ψ(t,s)
and ``cov_block`` Σ_t (the covariance of ``u_t`` given the clean part ``ū_0``, including any known Gaussian
initial part), plus the map between the user-facing state and block form. Everything else —
kernels, ``perturb``, the prior, reverse-time drifts for any λ, conversions between score and ε — is written
once here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .blocks import bchol, binv, blogdet, bmm, bmv, btrans, scalar_block

Array = jax.Array
ScoreFn = Callable[[Any, Array], Any]


# --------------------------------------------------------------------------------------------------
# Validation helpers shared by the package.
# --------------------------------------------------------------------------------------------------
def check_positive(name: str, value: float) -> float:
    """Return ``value`` as a float, or raise ValueError when it is not finite and > 0."""
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_times(sde: "LinearDiffusion", t: Any, what: str = "t") -> None:
    """Raise ValueError when a concrete time lies outside ``(0, T]`` of ``sde``; traced values pass."""
    try:
        arr = np.asarray(t, dtype=np.float64)
    except (TypeError, jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains non-finite values: {arr}")
    lo, hi = float(arr.min(initial=np.inf)), float(arr.max(initial=-np.inf))
    if arr.size and (lo <= 0.0 or hi > sde.T * (1 + 1e-6)):
        raise ValueError(
            f"{what} must lie in (0, T] = (0, {sde.T}] for {type(sde).__name__}; got values in [{lo}, {hi}]"
        )


# --------------------------------------------------------------------------------------------------
# The protocol.
# --------------------------------------------------------------------------------------------------
class LinearDiffusion:
    """Base class of every forward diffusion: a linear SDE with closed-form Gaussian kernels.

    Subclasses are frozen dataclasses registered as PyTrees whose hyperparameters are static (hashable) fields,
    so a diffusion can be passed to ``jit``-compiled functions and closes over no mutable state.

    Required from subclasses (block form, see module docstring): ``block_size``, ``T``, ``t_min``, ``t_eps``,
    ``drift_block(t)``, ``diffusion_block(t)``, ``transition_block(t, s)``, ``cov_block(t)``,
    ``prior_cov_block()``. Override ``to_blocks``/``from_blocks``/``clean_embedding``/``data_part`` for states
    other than a single array in the identity basis.
    """

    block_size: int = 1
    T: float
    t_min: float
    t_eps: float

    # ---- structure (defaults: x-only state in the identity basis) -------------------------------
    @property
    def coef_ndim(self) -> int:
        """Number of data axes over which coefficients vary (0: shared by every coordinate)."""
        return 0

    def to_blocks(self, y: Any) -> Array:
        """User state -> block form ``(B, *data_shape, k)`` in the diffusion's basis."""
        return y[..., None]

    def from_blocks(self, yb: Array) -> Any:
        """Block form -> user state."""
        return yb[..., 0]

    def clean_embedding(self) -> np.ndarray:
        """The k-vector e with ``ū_0 = e ⊗ x_0`` (the clean part of the initial state)."""
        return np.ones((1,))

    def data_part(self, y: Any) -> Array:
        """The data (``x``) part of a state."""
        return y

    def state_from_data(self, x: Array) -> Any:
        """The state whose data part is ``x`` and whose other parts are zero."""
        return x

    def check_state(self, y: Any) -> None:
        """Raise ValueError when ``y`` is not a batch of states of this diffusion."""
        if isinstance(y, (tuple, list)) or jnp.ndim(y) < 2:
            raise ValueError(
                f"{self.name} states are arrays (B, *data_shape); got {type(y).__name__} "
                f"of shape {jax.tree.map(jnp.shape, y)}"
            )

    def check_data_shape(self, shape: tuple) -> None:
        """Raise ValueError when data of ``shape`` (trailing axes of a batch) do not fit this diffusion (diffusions
        with per-coordinate coefficients or an image basis check it)."""

    def data_ndim_of(self, y: Any) -> int:
        """Number of data axes (excluding batch) of a state."""
        return jnp.ndim(self.data_part(y)) - 1

    # ---- closed forms given by subclasses ------------------------------------------------------
    def drift_block(self, t: Array) -> Array:
        """The drift ``F(t)``, shape ``t.shape + coef_shape + (k, k)``."""
        raise NotImplementedError

    def diffusion_block(self, t: Array) -> Array:
        """The diffusion ``G(t)``, shaped like ``F(t)``."""
        raise NotImplementedError

    def transition_block(self, t: Array, s: Array) -> Array:
        """``Ψ(t, s)`` with ``∂_tΨ = FΨ``, ``Ψ(s, s) = I``: ``E[u_t | u_s] = Ψ(t, s) u_s``."""
        raise NotImplementedError

    def cov_block(self, t: Array) -> Array:
        """``Σ_t = Cov[u_t | ū_0]``: ``dΣ/dt = FΣ + ΣFᵀ + GGᵀ`` from the known initial covariance."""
        raise NotImplementedError

    def prior_cov_block(self) -> Array:
        """The covariance of the prior ``N(0, Σ_prior)`` the samplers start from (≈ Σ_T)."""
        raise NotImplementedError

    # ---- alignment of per-sample times with the data axes -------------------------------------
    def align(self, coef: Array, t: Array, data_ndim: int) -> Array:
        """Reshape a coefficient ``t.shape + coef_shape + (k, k)`` so it broadcasts against block states.

        ``t`` is a scalar (shared time) or a vector of per-sample times of shape ``(B,)``.
        """
        t = jnp.asarray(t)
        if t.ndim == 0:
            return coef
        pad = data_ndim - self.coef_ndim
        return coef.reshape(t.shape + (1,) * pad + coef.shape[t.ndim :])

    def _coef(self, fn, t, data_ndim, *args):
        return self.align(fn(jnp.asarray(t), *args), t, data_ndim)

    # ---- derived: SDE terms ------------------------------------------------------------------
    def drift(self, y: Any, t: Array) -> Any:
        """Forward drift ``F(t) y``."""
        yb = self.to_blocks(y)
        return self.from_blocks(bmv(self._coef(self.drift_block, t, yb.ndim - 2), yb))

    def diffusion_apply(self, t: Array, z: Any) -> Any:
        """``G(t) z`` for a standard-normal-shaped state ``z``."""
        zb = self.to_blocks(z)
        return self.from_blocks(bmv(self._coef(self.diffusion_block, t, zb.ndim - 2), zb))

    def ggt_apply(self, t: Array, s: Any) -> Any:
        """``G(t) G(t)^T s`` (the only way the score enters the reverse dynamics)."""
        sb = self.to_blocks(s)
        g = self._coef(self.diffusion_block, t, sb.ndim - 2)
        return self.from_blocks(bmv(bmm(g, btrans(g)), sb))

    def reverse_drift(self, y: Any, t: Array, score: Any, lam: float = 0.0) -> Any:
        """Drift of the reverse-time family ``F y − ((1+λ²)/2) G Gᵀ ∇log p_t`` (λ=0: PF-ODE, λ=1: SDE)."""
        f = self.drift(y, t)
        g = self.ggt_apply(t, score)
        return jax.tree.map(lambda a, b: a - 0.5 * (1.0 + lam**2) * b, f, g)

    # ---- derived: kernels ----------------------------------------------------------------------
    def mean(self, x0: Array, t: Array) -> Any:
        """``E[u_t | x_0] = Ψ(t,0) ū_0``."""
        x0b = self.to_blocks(self.state_from_data(x0))
        e = jnp.asarray(self.clean_embedding(), x0b.dtype)
        clean = x0b[..., :1] * e  # lift the data coordinate (in basis) to the block vector e ⊗ x0
        psi = self._coef(self.transition_block, t, x0b.ndim - 2, jnp.zeros_like(jnp.asarray(t)))
        return self.from_blocks(bmv(psi, clean))

    def cov_factor(self, t: Array, data_ndim: int, kind: str = "cholesky") -> Array:
        """A factor K with ``K Kᵀ = Σ_t`` in block form (Cholesky; symmetric = Cholesky for 1×1 blocks)."""
        if kind != "cholesky":
            raise ValueError(f"unknown factor kind {kind!r}; accepted: 'cholesky'")
        return bchol(self._coef(self.cov_block, t, data_ndim))

    def perturb(self, key: Array, x0: Array, t: Array) -> tuple[Any, Any]:
        """Sample ``u_t ~ N(Ψ(t,0) ū_0, Σ_t)``; returns ``(u_t, z)`` with ``u_t = Ψ ū_0 + K_t z``."""
        m = self.mean(x0, t)
        mb = self.to_blocks(m)
        z = jax.random.normal(key, mb.shape, mb.dtype)
        k = self.cov_factor(t, mb.ndim - 2)
        return self.from_blocks(mb + bmv(k, z)), self.from_blocks(z)

    # ---- derived: prior -------------------------------------------------------------------------
    def prior_sample(self, key: Array, shape: tuple[int, ...], dtype=None) -> Any:
        """Draw from the prior ``N(0, Σ_prior)``; ``shape`` is the data shape with the batch axis first."""
        dtype = dtype or jnp.zeros(()).dtype
        k = self.block_size
        z = jax.random.normal(key, tuple(shape) + (k,), dtype)  # white in any orthonormal basis
        c = bchol(self.prior_cov_block()).astype(dtype)
        return self.from_blocks(bmv(c, z))

    def prior_logp(self, y: Any) -> Array:
        """Log-density of the prior, summed over all but the batch axis."""
        yb = self.to_blocks(y)
        c = self.prior_cov_block().astype(yb.dtype)
        cb = jnp.broadcast_to(c, yb.shape[1:-1] + c.shape[-2:])
        quad = jnp.sum(yb * bmv(binv(cb), yb), axis=tuple(range(1, yb.ndim)))
        logdet = jnp.sum(blogdet(cb))
        n = math.prod(yb.shape[1:])
        return -0.5 * (quad + logdet + n * math.log(2 * math.pi))

    # ---- derived: model-output conversions (any block structure) ------------------------------
    def eps_from_score(self, y: Any, t: Array, score: Any) -> Any:
        """``ε = −K_tᵀ ∇log p_t`` (K_t: Cholesky factor)."""
        sb = self.to_blocks(score)
        k = self.cov_factor(t, sb.ndim - 2)
        return self.from_blocks(-bmv(btrans(k), sb))

    def score_from_eps(self, y: Any, t: Array, eps: Any) -> Any:
        """``∇log p_t = −K_t^{-T} ε``."""
        eb = self.to_blocks(eps)
        k = self.cov_factor(t, eb.ndim - 2)
        return self.from_blocks(-bmv(btrans(binv(k)), eb))

    def clean_from_score(self, y: Any, t: Array, score: Any) -> Any:
        """Tweedie: ``E[ū_0 | u_t] = Ψ(t,0)^{-1} (u_t + Σ_t ∇log p_t)`` (the full clean state)."""
        yb, sb = self.to_blocks(y), self.to_blocks(score)
        nd = yb.ndim - 2
        cov = self._coef(self.cov_block, t, nd)
        psi_inv = self._coef(self.transition_block, t, nd, jnp.zeros_like(jnp.asarray(t)))
        return self.from_blocks(bmv(binv(psi_inv), yb + bmv(cov, sb)))

    # ---- gDDIM's factor R_t ------------------------------------------------------------------
    def gddim_factor(self, ts) -> np.ndarray:
        """gDDIM's ``R_t`` at the float64 times ``ts``: ``dR/dt = (F + ½GGᵀΣ⁻¹)R``,
        ``R_0R_0ᵀ = Σ_0``, so ``R_tR_tᵀ = Σ_t`` and ``ε = −R_tᵀ∇log p_t`` is constant along PF-ODE paths of
        Gaussian data. For 1×1 blocks ``R_t = √Σ_t``; diffusions with 2×2 blocks override this."""
        if self.block_size != 1:
            raise NotImplementedError(
                f"{self.name} must provide gddim_factor for {self.block_size}×{self.block_size} blocks"
            )
        with jax.ensure_compile_time_eval(), jax.enable_x64(True):
            return np.sqrt(np.array(self.cov_block(jnp.asarray(ts, jnp.float64)), np.float64))

    # ---- training ------------------------------------------------------------------------------
    default_prediction = "eps"  # what a network trained by the default recipe predicts

    def training_recipe(self, prediction: str | None = None, **options):
        """How a network is trained for this diffusion and wrapped as its model (:mod:`.recipes`). Default, for
        1×1 blocks: ``net(y, 999 t)`` predicts ``prediction`` (default ``default_prediction``: ε) with
        ``t ~ U[t_eps, T]``. Diffusions with other needs override this method; ``options`` are the loss options
        (``sigma_data``, ``p_mean``, ``p_std``, ``cld_param``, ``cld_mixed``, ``fdm_warmup_images``) a recipe may
        use."""
        from .recipes import EpsRecipe, check_options

        check_options(options, f"{self.name}.training_recipe")
        if self.block_size != 1:
            raise NotImplementedError(
                f"{self.name} has {self.block_size}×{self.block_size} blocks and no training recipe: give its class a "
                "training_recipe method (docs/GUIDE.md, 'Adding a diffusion')"
            )
        return EpsRecipe(prediction or self.default_prediction)

    # ---- misc ----------------------------------------------------------------------------------
    def check_time(self, t: Any, what: str = "t") -> None:
        """Raise ValueError when concrete times lie outside ``(0, T]``."""
        check_times(self, t, what)

    @property
    def name(self) -> str:
        """Display name (the class name unless overridden)."""
        return type(self).__name__


class ScalarDiffusion(LinearDiffusion):
    """A diffusion whose kernel is ``x_t = α(t) x_0 + σ(t) z`` with scalars shared by every coordinate.

    Subclasses give ``log_alpha(t)``, ``sigma(t)`` (std of ``x_t`` given the clean data, including any known
    initial noise) and the inverse ``t_of_rho`` of the noise-to-signal ratio ``ρ = σ/α``.
    The SDE terms follow exactly: ``F = d log α/dt`` and ``G² = dσ²/dt − 2Fσ²``, computed by
    forward-mode autodiff of the closed forms.
    """

    def log_alpha(self, t: Array) -> Array:
        """``log α(t)`` of ``x_t = α(t) x_0 + σ(t) z``."""
        raise NotImplementedError

    def sigma(self, t: Array) -> Array:
        """``σ(t)``: the std of ``x_t`` given ``x_0`` (any known initial noise included)."""
        raise NotImplementedError

    def t_of_rho(self, rho: Array) -> Array:
        """The inverse of ``ρ(t) = σ(t)/α(t)`` (the EDM noise level of time t)."""
        raise NotImplementedError

    prior_std: float = 1.0

    # scalar views
    def alpha(self, t: Array) -> Array:
        """``α(t) = exp(log α(t))``."""
        return jnp.exp(self.log_alpha(t))

    def rho(self, t: Array) -> Array:
        """Noise-to-signal ratio ``σ/α`` (the EDM σ of this process)."""
        return self.sigma(t) / self.alpha(t)

    def log_snr(self, t: Array) -> Array:
        """Half log-SNR ``λ = log α − log σ``."""
        return self.log_alpha(t) - jnp.log(self.sigma(t))

    def t_of_log_snr(self, lam: Array) -> Array:
        """The inverse of ``λ(t) = log α − log σ``: ``t_of_rho(e^{−λ})``."""
        return self.t_of_rho(jnp.exp(-lam))

    def f_scalar(self, t: Array) -> Array:
        """``F(t) = d log α/dt`` (forward-mode autodiff)."""
        t = jnp.asarray(t)
        return jax.jvp(self.log_alpha, (t,), (jnp.ones_like(t),))[1]

    def g2_scalar(self, t: Array) -> Array:
        """``G²(t) = dσ²/dt − 2Fσ²`` (forward-mode autodiff)."""
        t = jnp.asarray(t)
        var = lambda tt: self.sigma(tt) ** 2
        v, dv = jax.jvp(var, (t,), (jnp.ones_like(t),))
        return dv - 2.0 * self.f_scalar(t) * v

    def alpha_sigma_rates(self, t: Array) -> tuple[Array, Array]:
        """``(dα/dt, dσ/dt)`` (forward-mode autodiff); the flow velocity of a clean/noise pair is
        ``α̇ x_0 + σ̇ ε``."""
        t = jnp.asarray(t)
        one = jnp.ones_like(t)
        return jax.jvp(self.alpha, (t,), (one,))[1], jax.jvp(self.sigma, (t,), (one,))[1]

    def pair_coefficients(self, kind: str, t: Array) -> tuple[Any, Any]:
        """``(a, b)`` with the prediction ``kind`` equal to ``a x_0 + b ε`` on ``x_t = α x_0 + σ ε``: ε (0, 1),
        x0 (1, 0), v = αε − σx0 (−σ, α) (Salimans & Ho), flow velocity (α̇, σ̇)."""
        if kind == "eps":
            return 0.0, 1.0
        if kind == "x0":
            return 1.0, 0.0
        if kind == "v":
            return -self.sigma(t), self.alpha(t)
        if kind == "velocity":
            return self.alpha_sigma_rates(t)
        raise ValueError(f"no (x0, ε) coefficients for prediction {kind!r}; accepted: 'eps', 'x0', 'v', 'velocity'")

    # block forms
    def drift_block(self, t):
        return scalar_block(self.f_scalar(t))

    def diffusion_block(self, t):
        return scalar_block(jnp.sqrt(self.g2_scalar(t)))

    def transition_block(self, t, s):
        return scalar_block(jnp.exp(self.log_alpha(t) - self.log_alpha(s)))

    def cov_block(self, t):
        return scalar_block(self.sigma(t) ** 2)

    def prior_cov_block(self):
        return scalar_block(jnp.asarray(self.prior_std**2))

    # cheap scalar broadcasting for solvers
    def bcast(self, c: Array, x: Array) -> Array:
        """Broadcast a scalar or per-sample coefficient against a batch ``x``."""
        c = jnp.asarray(c)
        if c.ndim == 0:
            return c
        return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def diffusion_dataclass(cls):
    """Frozen dataclass registered as a PyTree with every field static (hyperparameters are hashable)."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    return jax.tree_util.register_dataclass(cls, data_fields=[], meta_fields=[f.name for f in dataclasses.fields(cls)])
