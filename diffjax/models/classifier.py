"""DLG's noise-level classifier ``c_φ(x) ∈ R^K``: logits over the K levels of the noise grid,
trained by cross-entropy on ``(x_0 perturbed to t_j, j)`` with j uniform, so ``softmax c_φ`` estimates
``π(j | x) ∝ p_{t_j}(x)``. Not counted in NFE."""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx


class NoiseLevelCNN(nnx.Module):
    """DMCMC's classifier: blocks ``conv3×3 → ReLU → average-pool`` (channels 32, 64, 128, 256), flatten, then
    ``Linear(·, K)``. Input ``(B, H, W, C)``; ``pool_strides`` gives each block's pooling stride with window 2
    (32×32 input: all 2; 256×256: (4, 4, 4, 2)). About 1.4 M parameters for 32×32×3 and K = 1000."""

    def __init__(
        self,
        image_shape: Sequence[int],
        num_levels: int,
        channels: Sequence[int] = (32, 64, 128, 256),
        pool_strides: Sequence[int] | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        h, w, c = (int(s) for s in image_shape)
        pool_strides = tuple(pool_strides or (2,) * len(channels))
        if len(pool_strides) != len(channels):
            raise ValueError("give one pooling stride per block")
        self.pool_strides = pool_strides
        convs = []
        for ch in channels:
            convs.append(nnx.Conv(c, ch, (3, 3), padding="SAME", rngs=rngs))
            c = ch
        for s in pool_strides:
            h, w = (h - 2) // s + 1, (w - 2) // s + 1
        if h < 1 or w < 1:
            raise ValueError(f"image {tuple(image_shape)} is too small for {len(channels)} pooling blocks")
        self.convs = nnx.List(convs)
        self.head = nnx.Linear(h * w * c, num_levels, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv, s in zip(self.convs, self.pool_strides):
            x = nnx.avg_pool(jax.nn.relu(conv(x)), (2, 2), strides=(s, s))
        return self.head(x.reshape(x.shape[0], -1))


class NoiseLevelMLP(nnx.Module):
    """A small MLP classifier for low-dimensional data ``(B, d)`` (the test bed's 2-D mixtures)."""

    def __init__(self, dim: int, num_levels: int, hidden: Sequence[int] = (128, 128, 128), *, rngs: nnx.Rngs):
        sizes = (int(dim),) + tuple(hidden)
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.head = nnx.Linear(sizes[-1], num_levels, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for layer in self.layers:
            x = jax.nn.silu(layer(x))
        return self.head(x)
