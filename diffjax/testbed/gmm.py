"""Gaussian-mixture data with the exact marginal, score, denoiser and ε for every linear diffusion.

Data ``x_0 ~ Σ_k w_k N(m_k, C_k)``. Each covariance is stored through its eigen-decomposition
``C_k = U_k diag(e_k) U_kᵀ`` (computed once in float64 with numpy). When the diffusion's blocks are shared by all
coordinates, they commute with ``U_k``, so in the rotated coordinates ``w = U_kᵀ(u − Ψ m_k)`` every eigen-direction
j is an independent k×k problem with covariance ``P_kj(t) = (Ψe)(Ψe)ᵀ e_kj + Σ_t``. Isotropic (``(K,)``) or
diagonal (``(K, d)``) covariances skip the rotation (the fast path; it also serves diffusions whose
coefficients vary per coordinate, when the covariances are diagonal in that diffusion's basis).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..diffusions.base import LinearDiffusion
from ..diffusions.blocks import binv, blogdet, bmv


class GaussianMixture:
    """An exact data distribution for tests and benchmarks.

    Args:
      weights: ``(K,)`` non-negative mixture weights (normalised here).
      means: ``(K, *data_shape)``.
      covs: ``(K,)`` isotropic variances, ``(K, d)`` diagonal variances or ``(K, d, d)`` dense covariances
        (``d = prod(data_shape)``, C-order flattening). Zero variances give Dirac components.
      basis: the basis in which ``(K, d)`` diagonal covariances are diagonal: ``"pixel"`` (default) or
        ``"dct"`` (the orthonormal 2-D DCT over (H, W) per channel, for images ``(H, W, C)``; the fast path of the
        blurring diffusion, whose basis it is). Means are always in pixel space.
    """

    def __init__(self, weights, means, covs, basis: str = "pixel"):
        w = np.asarray(weights, np.float64)
        m = np.asarray(means, np.float64)
        c = np.asarray(covs, np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"weights must have shape (K,) with K >= 1, got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        k = w.shape[0]
        if m.ndim < 2 or m.shape[0] != k:
            raise ValueError(f"means must have shape (K={k}, *data_shape), got {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ValueError("means contain non-finite values")
        self.data_shape = tuple(m.shape[1:])
        d = int(np.prod(self.data_shape))
        self.dim = d
        self.weights = w / w.sum()
        self.means = m
        if c.shape == (k,):
            self.kind, self.evals, self.evecs = "diag", np.repeat(c[:, None], d, axis=1), None
        elif c.shape == (k, d):
            self.kind, self.evals, self.evecs = "diag", c, None
        elif c.shape == (k, d, d):
            if not np.allclose(c, np.swapaxes(c, 1, 2), atol=1e-10 * max(1.0, np.abs(c).max())):
                raise ValueError("dense covariances must be symmetric")
            evals, evecs = np.linalg.eigh(c)
            self.kind, self.evals, self.evecs = "dense", evals, evecs
        else:
            raise ValueError(f"covs must have shape (K,), (K, d) or (K, d, d) with K={k}, d={d}; got {c.shape}")
        if not np.all(np.isfinite(self.evals)) or self.evals.min() < -1e-10 * max(1.0, self.evals.max()):
            raise ValueError("covariances must be finite and positive semi-definite")
        self.evals = np.clip(self.evals, 0.0, None)
        if basis not in ("pixel", "dct"):
            raise ValueError(f"basis must be 'pixel' or 'dct', got {basis!r}")
        if basis == "dct" and (self.kind != "diag" or len(self.data_shape) != 3):
            raise ValueError("basis='dct' needs (K,) or (K, d) covariances and images of shape (H, W, C)")
        self.basis = basis
        # isotropic components are diagonal in every orthonormal basis
        self.isotropic = self.kind == "diag" and bool(np.all(self.evals == self.evals[:, :1]))

    def _dct_matrix(self) -> np.ndarray:
        """Columns: the pixel-space images of the orthonormal DCT basis vectors (d × d)."""
        from scipy.fft import idctn

        eye = np.eye(self.dim).reshape((self.dim,) + self.data_shape)
        return idctn(eye, axes=(1, 2), norm="ortho").reshape(self.dim, self.dim).T

    def _eigvecs(self):
        """(K, d, d) eigenvectors in pixel space, or None for pixel-diagonal covariances."""
        if self.evecs is not None:
            return self.evecs
        if self.basis == "dct":
            return np.broadcast_to(self._dct_matrix(), (self.num_components, self.dim, self.dim))
        return None

    # ------------------------------------------------------------------ data-space facts
    @property
    def num_components(self) -> int:
        """The number of components K."""
        return self.weights.shape[0]

    def covariances(self) -> np.ndarray:
        """Dense ``(K, d, d)`` covariances (float64)."""
        u = self._eigvecs()
        if u is None:
            return np.stack([np.diag(e) for e in self.evals])
        return np.einsum("kij,kj,klj->kil", u, self.evals, u)

    def mean(self) -> np.ndarray:
        """The mixture mean ``Σ_k w_k m_k`` (flattened, float64)."""
        return np.einsum("k,kd->d", self.weights, self.means.reshape(self.num_components, -1))

    def covariance(self) -> np.ndarray:
        """Covariance of the mixture (law of total covariance)."""
        mu = self.means.reshape(self.num_components, -1)
        mbar = self.mean()
        dm = mu - mbar
        return np.einsum("k,kij->ij", self.weights, self.covariances()) + np.einsum("k,ki,kj->ij", self.weights, dm, dm)

    def sample(self, key: jax.Array, n: int, dtype=None) -> jax.Array:
        """``n`` exact samples of the data, shape ``(n, *data_shape)``."""
        dtype = dtype or jnp.zeros(()).dtype
        kc, kz = jax.random.split(key)
        comp = jax.random.choice(kc, self.num_components, (n,), p=jnp.asarray(self.weights))
        z = jax.random.normal(kz, (n, self.dim), dtype)
        scale = jnp.sqrt(jnp.asarray(self.evals, dtype))[comp] * z
        if self.evecs is not None:
            scale = jnp.einsum("nij,nj->ni", jnp.asarray(self.evecs, dtype)[comp], scale)
        elif self.basis == "dct":
            from jax.scipy.fft import idctn

            scale = idctn(scale.reshape((n,) + self.data_shape), axes=(1, 2), norm="ortho").reshape(n, -1)
        x = jnp.asarray(self.means.reshape(self.num_components, -1), dtype)[comp] + scale
        return x.reshape((n,) + self.data_shape)

    # ------------------------------------------------------------------ marginals under a diffusion
    def marginal_moments(self, sde: LinearDiffusion, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance (float64 numpy) of the data part ``x_t`` of the marginal ``p_t``.

        Only for diffusions in the identity basis with shared blocks (VP, VE, EDM, CLD's x part).
        """
        if sde.coef_ndim:
            raise NotImplementedError("marginal_moments supports diffusions with shared (isotropic) blocks")
        with jax.ensure_compile_time_eval(), jax.enable_x64(True):
            psi = np.asarray(sde.transition_block(jnp.float64(t), jnp.float64(0.0)), np.float64)
            cov = np.asarray(sde.cov_block(jnp.float64(t)), np.float64)
        e = np.asarray(sde.clean_embedding(), np.float64)
        pe = psi @ e
        mean = pe[0] * self.mean()
        c = pe[0] ** 2 * self.covariance() + cov[0, 0] * np.eye(self.dim)
        return mean, c

    def _components(self, sde: LinearDiffusion, t: jax.Array, dtype):
        """Per-time block coefficients: Ψe ``(…, k)``, Σ_t ``(…, k, k)`` with ``…`` = t.shape (+ coef shape)."""
        psi = sde.transition_block(t, jnp.zeros_like(t)).astype(dtype)
        cov = sde.cov_block(t).astype(dtype)
        e = jnp.asarray(sde.clean_embedding(), dtype)
        return bmv(psi, e), cov

    def _per_component(self, sde: LinearDiffusion, y: Any, t: Any):
        """Log-densities ``(B, K)``, score pieces and posterior pieces for every component."""
        yb = sde.to_blocks(y)
        dtype = yb.dtype
        b = yb.shape[0]
        nd = yb.ndim - 2
        if yb.shape[1:-1] != self.data_shape:
            raise ValueError(f"state data shape {yb.shape[1:-1]} does not match the mixture's {self.data_shape}")
        t = jnp.asarray(t, dtype)
        if t.ndim not in (0, 1) or (t.ndim == 1 and t.shape[0] != b):
            raise ValueError(f"t must be a scalar or have shape (B,)=({b},), got {t.shape}")
        pe, cov = self._components(sde, t, dtype)  # (…, k), (…, k, k)
        if t.ndim == 1:  # per-sample times -> align with data axes
            pad = nd - sde.coef_ndim
            pe = pe.reshape(t.shape + (1,) * pad + pe.shape[1:])
            cov = cov.reshape(t.shape + (1,) * pad + cov.shape[1:])
        k = sde.block_size
        means = jnp.asarray(self.means, dtype)  # (K, *shape)
        evals = jnp.asarray(self.evals, dtype).reshape((self.num_components,) + self.data_shape)
        logw = jnp.log(jnp.asarray(self.weights, dtype))

        sde_basis = getattr(sde, "basis_name", "pixel")
        if sde.coef_ndim and not self.isotropic and (self.evecs is not None or self.basis != sde_basis):
            raise ValueError(
                f"{sde.name} has per-coordinate coefficients in the {sde_basis!r} basis: give the mixture covariances "
                f"diagonal in that basis (GaussianMixture(..., basis={sde_basis!r})), not {self.basis!r}/{self.kind}"
            )
        evecs = None if (sde.coef_ndim or self.isotropic) else self._eigvecs()

        def one(mk, ek, uk):
            # residual r = u − Ψ ū_0-mean, in block form (B, *shape, k)
            r = yb - pe * sde.to_blocks(sde.state_from_data(mk[None]))[..., :1]
            if uk is not None:  # rotate every block channel into the eigenbasis of C_k
                rf = r.reshape(b, self.dim, k)
                w = jnp.einsum("dj,bdk->bjk", uk, rf).reshape(r.shape)
            else:
                w = r
            # P = (Ψe)(Ψe)ᵀ e_j + Σ_t per eigen-direction
            p = pe[..., :, None] * pe[..., None, :] * ek[..., None, None] + cov
            p = jnp.broadcast_to(p, w.shape + (k,))
            pinv = binv(p)
            q = bmv(pinv, w)  # P⁻¹ w
            axes = tuple(range(1, w.ndim))
            logn = -0.5 * (jnp.sum(w * q, axes) + jnp.sum(blogdet(p), axes[:-1]) + self.dim * k * math.log(2 * math.pi))
            # posterior mean of the clean data coordinate: m + U (e_j (Ψe)·q_j), in the diffusion's basis
            x0w = ek * jnp.sum(pe * q, -1)
            if uk is not None:
                qf = q.reshape(b, self.dim, k)
                q = jnp.einsum("dj,bjk->bdk", uk, qf).reshape(r.shape)
                x0w = jnp.einsum("dj,bj->bd", uk, x0w.reshape(b, self.dim)).reshape((b,) + self.data_shape)
            onehot = jnp.zeros((k,), dtype).at[0].set(1.0)
            x0w = sde.data_part(sde.from_blocks(x0w[..., None] * onehot))  # back to pixels (DCT for Blur)
            return logn, -q, mk[None] + x0w

        if evecs is None:
            logn, scores, x0s = jax.vmap(lambda m, e: one(m, e, None), out_axes=(1, 1, 1))(means, evals)
        else:
            logn, scores, x0s = jax.vmap(one, out_axes=(1, 1, 1))(means, evals, jnp.asarray(evecs, dtype))
        return logn + logw, scores, x0s

    def log_prob(self, sde: LinearDiffusion, y: Any, t: Any) -> jax.Array:
        """Exact ``log p_t(y)`` of the (full) state, shape ``(B,)``."""
        logp, _, _ = self._per_component(sde, y, t)
        return jax.scipy.special.logsumexp(logp, axis=1)

    def score(self, sde: LinearDiffusion, y: Any, t: Any) -> Any:
        """Exact ``∇_y log p_t(y)`` (a state-shaped PyTree)."""
        logp, scores, _ = self._per_component(sde, y, t)
        pi = jax.nn.softmax(logp, axis=1)
        pi = pi.reshape(pi.shape + (1,) * (scores.ndim - 2))
        return sde.from_blocks(jnp.sum(pi * scores, axis=1))

    def denoiser(self, sde: LinearDiffusion, y: Any, t: Any) -> jax.Array:
        """Exact ``E[x_0 | u_t = y]`` (data shape)."""
        logp, _, x0s = self._per_component(sde, y, t)
        pi = jax.nn.softmax(logp, axis=1)
        pi = pi.reshape(pi.shape + (1,) * (x0s.ndim - 2))
        return jnp.sum(pi * x0s, axis=1)

    def eps(self, sde: LinearDiffusion, y: Any, t: Any) -> Any:
        """Exact ``ε* = −K_tᵀ ∇log p_t`` for the diffusion's Cholesky factor."""
        return sde.eps_from_score(y, t, self.score(sde, y, t))

    def velocity(self, sde: LinearDiffusion, y: Any, t: Any) -> jax.Array:
        """Exact flow velocity ``E[α̇ x_0 + σ̇ ε | x_t = y]`` (scalar diffusions): the probability-flow ODE's
        ``dx/dt`` and what a flow-matching network learns (``ε − x_0`` under :class:`diffjax.Flow`)."""
        x0 = self.denoiser(sde, y, t)
        c = lambda v: sde.bcast(jnp.asarray(v, y.dtype), y)
        eps = (y - c(sde.alpha(t)) * x0) / c(sde.sigma(t))
        da, ds = sde.pair_coefficients("velocity", jnp.asarray(t, y.dtype))
        return c(da) * x0 + c(ds) * eps

    def velocity_fn(self, sde: LinearDiffusion):
        """``(y, t) ↦`` the exact flow velocity (a ``kind="velocity"`` model)."""
        return lambda y, t: self.velocity(sde, y, t)

    def noise_level_logits(self, sde: LinearDiffusion, times: Any):
        """The exact noise-level posterior of DLG as a classifier: ``x -> (B, K)`` logits
        ``log p_{t_j}(x)``, so ``softmax`` is ``π(j | x)`` under a uniform prior on the levels ``times``."""
        times = np.asarray(times, np.float64)

        def logits(x):
            ts = jnp.asarray(times, jax.tree.leaves(x)[0].dtype)
            return jax.vmap(lambda t: self.log_prob(sde, x, t), out_axes=1)(ts)

        return logits

    def log_prob_fn(self, sde: LinearDiffusion):
        """``(y, t) -> log p_t(y)``, shape ``(B,)`` (per-sample ``t`` allowed)."""
        return lambda y, t: self.log_prob(sde, y, t)

    def score_fn(self, sde: LinearDiffusion):
        """``(y, t) -> ∇ log p_t(y)`` for THIS diffusion."""
        return lambda y, t: self.score(sde, y, t)

    def denoiser_fn(self, sde: LinearDiffusion):
        """``(y, t) ↦ E[x_0 | u_t = y]`` as a callable (the exact x̂₀ model)."""
        return lambda y, t: self.denoiser(sde, y, t)
