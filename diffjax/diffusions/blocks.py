"""Small-block linear algebra on the trailing ``(k, k)`` axes, k ∈ {1, 2}, in closed form.

Every diffusion's operators are block-diagonal with 1×1 or 2×2 blocks (:mod:`.base`); these are the products,
inverses and factors of such blocks, with broadcasting over the leading axes. ``xp`` is the array namespace:
``jax.numpy`` (the default: the diffusions' traced code) or ``numpy`` (float64 solver tables computed once per
grid, or ``xp_of(ts)`` for tables that may be traced).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def bmv(m: Any, v: Any, xp: Any = jnp) -> Any:
    """Block matrix–vector product ``(…, k, k) @ (…, k) -> (…, k)``."""
    if m.shape[-1] == 1:
        return m[..., 0] * v
    return xp.einsum("...ij,...j->...i", m, v)


def bmm(a: Any, b: Any, xp: Any = jnp) -> Any:
    """Block matrix product ``(…, k, k) @ (…, k, k)``."""
    if a.shape[-1] == 1:
        return a * b
    return xp.einsum("...ij,...jk->...ik", a, b)


def btrans(m: Any, xp: Any = jnp) -> Any:
    """Transpose of the trailing (k, k) axes."""
    return xp.swapaxes(m, -1, -2)


def binv(m: Any, xp: Any = jnp) -> Any:
    """Inverse of 1×1 or 2×2 blocks (closed form: the adjugate over the determinant)."""
    if m.shape[-1] == 1:
        return 1.0 / m
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    return xp.stack([xp.stack([d, -b], -1), xp.stack([-c, a], -1)], -2) / det[..., None, None]


def bchol(m: Any, xp: Any = jnp) -> Any:
    """Lower Cholesky factor of symmetric positive-definite 1×1 or 2×2 blocks."""
    if m.shape[-1] == 1:
        return xp.sqrt(m)
    l11 = xp.sqrt(m[..., 0, 0])
    l21 = m[..., 1, 0] / l11
    l22 = xp.sqrt(m[..., 1, 1] - l21**2)
    zero = xp.zeros_like(l11)
    return xp.stack([xp.stack([l11, zero], -1), xp.stack([l21, l22], -1)], -2)


def blogdet(m: Any, xp: Any = jnp) -> Any:
    """log det of positive-definite 1×1 or 2×2 blocks."""
    if m.shape[-1] == 1:
        return xp.log(m[..., 0, 0])
    return xp.log(m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0])


def scalar_block(c: Any) -> jax.Array:
    """Lift a scalar (any shape) to a 1×1 block (a jax array)."""
    return jnp.asarray(c)[..., None, None]
