"""A residual MLP with a noise embedding, for low-dimensional data (2-D toys, flattened 8×8 digits)."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from .layers import NoiseEmbedding


class MLP(nnx.Module):
    """``F_θ(x, c_noise[, label])`` for data of shape ``(B, *data_shape)`` (last axis = channels). Input and
    output may carry ``in_mult``/``out_mult`` times the channels, concatenated on the last axis (CLD's (x, v)).
    Residual blocks ``h ← h + W₂ SiLU(W₁ SiLU(h) + emb)``."""

    def __init__(
        self,
        data_shape: Sequence[int],
        width: int = 256,
        depth: int = 3,
        emb_channels: int | None = None,
        embedding: str = "positional",
        num_classes: int = 0,
        in_mult: int = 1,
        out_mult: int = 1,
        dtype=jnp.float32,
        *,
        rngs: nnx.Rngs,
    ):
        self.data_shape = tuple(int(s) for s in data_shape)
        dim = 1
        for s in self.data_shape:
            dim *= s
        emb_channels = emb_channels or width
        self.dtype = dtype
        self.out_mult = out_mult
        self.embed = NoiseEmbedding(width, emb_channels, embedding, num_classes, rngs=rngs)
        self.inp = nnx.Linear(dim * in_mult, width, rngs=rngs, dtype=dtype)
        self.emb_proj = nnx.List([nnx.Linear(emb_channels, width, rngs=rngs, dtype=dtype) for _ in range(depth)])
        self.lin1 = nnx.List([nnx.Linear(width, width, rngs=rngs, dtype=dtype) for _ in range(depth)])
        self.lin2 = nnx.List([nnx.Linear(width, width, rngs=rngs, dtype=dtype) for _ in range(depth)])
        self.out = nnx.Linear(width, dim * out_mult, rngs=rngs, dtype=dtype)

    def __call__(
        self, x: jax.Array, c_noise: jax.Array, labels: jax.Array | None = None, *, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """``dropout_key`` is part of the network protocol (the MLP has no dropout and ignores it)."""
        b = x.shape[0]
        emb = jax.nn.silu(self.embed(c_noise, b, labels))
        h = self.inp(x.reshape(b, -1).astype(self.dtype))
        for p, l1, l2 in zip(self.emb_proj, self.lin1, self.lin2):
            h = h + l2(jax.nn.silu(l1(jax.nn.silu(h)) + p(emb)))
        out = self.out(jax.nn.silu(h)).astype(x.dtype)
        return out.reshape((b,) + self.data_shape[:-1] + (self.data_shape[-1] * self.out_mult,))


def build(data_shape, options: dict, **common) -> MLP:
    """The registry's builder: ``options`` from a config's ``model`` section (width, depth, embedding)."""
    return MLP(
        data_shape,
        options.get("width", 256),
        options.get("depth", 3),
        embedding=options.get("embedding", "positional"),
        **common,
    )
