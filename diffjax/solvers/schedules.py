"""Time grids for sampling: M steps ⇒ M+1 strictly decreasing times from ``t_start`` to
``t_end``.

Grids depend only on static quantities (the diffusion, M, the kind), so they are computed once, in float64
numpy, at trace time — even inside ``jit`` — and validated before any compilation:

* ``uniform``   ``t_i = T + (i/M)(t_end − T)``
* ``quadratic`` ``t_i = (√T + (i/M)(√t_end − √T))²``
* ``logsnr``    half log-SNR ``λ`` uniform between ``λ(T)`` and ``λ(t_end)`` (DPM-Solver)
* ``karras``    ``ρ_i^{1/r}`` uniform between ``ρ(T)^{1/r}`` and ``ρ(t_end)^{1/r}`` on the noise-to-signal ratio
  ``ρ = σ/α`` (EDM, ``r = 7``), mapped back through the exact inverse ``t(ρ)``
* ``nsr``       SciRE's NSR-k grid: ``u = −log(ρ + k ρ_end)`` uniform, ``ρ_i = e^{−u_i} − k ρ_end`` (k = 3.1;
  k → 0 is the log-SNR grid, larger k moves points away from t_end)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..diffusions.base import LinearDiffusion, ScalarDiffusion

GRIDS = ("uniform", "quadratic", "logsnr", "karras", "nsr")


def on_grid(fn, *ts) -> Any:
    """``fn(*ts)`` for a formula of the times (``sde.rho``, ``sde.transition_block``, …): in float64 numpy for
    concrete times, computed eagerly even while a caller is being traced (solver tables are exact constants), and
    as the traced jnp expression when any time is a jax array (a grid that ``dj.solvers.learn`` differentiates)."""
    if any(isinstance(t, jax.Array) for t in ts):
        return fn(*ts)
    with jax.ensure_compile_time_eval(), jax.enable_x64(True):
        return np.array(fn(*[jnp.asarray(a, jnp.float64) for a in ts]), np.float64)


def make_grid(
    sde: LinearDiffusion,
    num_steps: int,
    kind: str = "uniform",
    t_start: float | None = None,
    t_end: float | None = None,
    rho: float = 7.0,
    nsr_k: float = 3.1,
) -> np.ndarray:
    """A float64 grid of ``num_steps + 1`` times from ``t_start`` (default ``sde.T``) to ``t_end`` (``sde.t_min``)."""
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    t0 = float(sde.T if t_start is None else t_start)
    t1 = float(sde.t_min if t_end is None else t_end)
    if not (0.0 < t1 < t0 <= sde.T * (1 + 1e-12)):
        raise ValueError(f"need 0 < t_end < t_start <= T={sde.T}; got t_start={t0}, t_end={t1}")
    frac = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    if kind == "uniform":
        ts = t0 + frac * (t1 - t0)
    elif kind == "quadratic":
        ts = (np.sqrt(t0) + frac * (np.sqrt(t1) - np.sqrt(t0))) ** 2
    elif kind in ("logsnr", "karras", "nsr"):
        if not isinstance(sde, ScalarDiffusion):
            raise ValueError(
                f"grid {kind!r} needs a scalar diffusion (VP/VE/EDM); use 'uniform' or 'quadratic' for {sde.name}"
            )
        r0, r1 = on_grid(sde.rho, t0), on_grid(sde.rho, t1)
        if kind == "logsnr":
            rhos = np.exp(np.log(r0) + frac * (np.log(r1) - np.log(r0)))
        elif kind == "nsr":
            if not nsr_k >= 0:
                raise ValueError(f"nsr_k must be >= 0, got {nsr_k}")
            u0, u1 = -np.log(r0 + nsr_k * r1), -np.log(r1 + nsr_k * r1)
            rhos = np.exp(-(u0 + frac * (u1 - u0))) - nsr_k * r1
        else:
            if not rho > 0:
                raise ValueError(f"karras rho must be > 0, got {rho}")
            rhos = (r0 ** (1 / rho) + frac * (r1 ** (1 / rho) - r0 ** (1 / rho))) ** rho
        ts = on_grid(sde.t_of_rho, rhos)
        ts[0], ts[-1] = t0, t1  # exact endpoints
    else:
        raise ValueError(f"unknown grid kind {kind!r}; accepted: {list(GRIDS)}")
    return validate_grid(sde, ts)


def grid_from_sigmas(sde: LinearDiffusion, sigmas: Any) -> np.ndarray:
    """The diffjax time grid ``t_i = t(ρ_i)`` of a noise-level list ``ρ_0 > … > ρ_M > 0`` in the convention of
    k-diffusion and diffusers' ``set_timesteps(sigmas=...)``: ρ = σ/α, the noise level of ``x/α`` (EDM's σ).
    The inverse of :meth:`Learned.grid_as`. A trailing 0 is refused: diffjax grids end at a positive time, and
    the final step to ρ = 0 (the model's denoised output) is ``dj.sample(..., denoise=True)``."""
    try:
        rho = np.asarray(sigmas, np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"sigmas must be a 1-D list of numbers, got {sigmas!r}") from e
    if rho.ndim != 1 or len(rho) < 2 or not np.all(np.isfinite(rho)):
        raise ValueError(f"sigmas must be a finite 1-D list of at least 2 noise levels, got {rho}")
    if rho[-1] == 0.0:
        raise ValueError(
            "sigmas end at 0: drop the trailing 0 and sample with denoise=True (one more evaluation), which is the "
            "final step to σ = 0"
        )
    if np.any(rho <= 0):
        raise ValueError(f"noise levels must be positive, got {rho}")
    ts = on_grid(sde.t_of_rho, rho)
    ts = np.where(np.abs(ts - sde.T) <= 1e-9 * sde.T, sde.T, ts)  # ρ(T) maps back to T itself (the prior's time)
    return validate_grid(sde, ts)


def validate_grid(sde: LinearDiffusion, ts: Any) -> np.ndarray:
    """Check a user grid: 1-D, ≥ 2 points, finite, strictly decreasing, inside ``(0, T]``."""
    try:
        arr = np.asarray(ts, dtype=np.float64)
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError) as e:
        raise ValueError("a time grid must be concrete (numpy or a non-traced array)") from e
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(f"a time grid must be 1-D with at least 2 points, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"the time grid contains non-finite values: {arr}")
    d = np.diff(arr)
    if not np.all(d < 0):
        i = int(np.argmax(d >= 0))
        raise ValueError(
            f"the time grid must be strictly decreasing (no duplicates); t[{i}]={arr[i]} -> t[{i + 1}]={arr[i + 1]}"
        )
    if arr[-1] <= 0 or arr[0] > sde.T * (1 + 1e-9):
        raise ValueError(f"grid times must lie in (0, T] = (0, {sde.T}] for {sde.name}; got [{arr[-1]}, {arr[0]}]")
    return arr
