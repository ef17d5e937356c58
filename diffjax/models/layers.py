"""Building blocks shared by the networks: noise embeddings, the conditioning MLP and FIR resampling."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def positional_embedding(
    c_noise: jax.Array, channels: int, max_positions: float = 10000.0, endpoint: bool = True
) -> jax.Array:
    """Transformer sinusoids of the noise label: ``[cos(c·f_k), sin(c·f_k)]`` with
    ``f_k = max_positions^{−k/(channels/2 − 1)}`` (``endpoint``, DDPM++) or ``^{−k/(channels/2)}`` (ADM),
    k = 0…channels/2 − 1."""
    half = channels // 2
    freqs = (1.0 / max_positions) ** (jnp.arange(half, dtype=jnp.float32) / max(half - (1 if endpoint else 0), 1))
    arg = jnp.asarray(c_noise, jnp.float32).reshape(-1, 1) * freqs
    return jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], axis=-1)


class FourierEmbedding(nnx.Module):
    """Random Fourier features of the noise label (NCSN++): ``[cos(2π c ω), sin(2π c ω)]``, ω ~ N(0, scale²),
    fixed (not trained).

    The arguments reach ~10³ rad, so the float32 rounding of ``2π c ω`` is amplified by the network; the product
    is formed in the order of the code the weights come from: ``c · (2πω)`` (EDM, the default) or ``(c ω) · 2π``
    (score_sde, ``premultiplied=False``)."""

    def __init__(self, channels: int, scale: float = 16.0, premultiplied: bool = True, *, rngs: nnx.Rngs):
        self.freqs = nnx.Variable(jax.random.normal(rngs.params(), (channels // 2,)) * scale)
        self.premultiplied = premultiplied

    def __call__(self, c_noise: jax.Array) -> jax.Array:
        c = jnp.asarray(c_noise, jnp.float32).reshape(-1, 1)
        f = self.freqs[...]
        arg = c * (2 * math.pi * f) if self.premultiplied else (c * f) * (2 * math.pi)
        return jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], axis=-1)


class NoiseEmbedding(nnx.Module):
    """Noise label (+ optional class label) → conditioning vector: embedding, then ``Linear → SiLU → Linear``.

    Class labels ``0…num_classes−1``; the extra index ``num_classes`` is the "no label" token used by
    classifier-free guidance.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        kind: str = "positional",
        num_classes: int = 0,
        fourier_scale: float = 16.0,
        fourier_premultiplied: bool = True,
        *,
        rngs: nnx.Rngs,
    ):
        if kind not in ("positional", "fourier"):
            raise ValueError(f"noise embedding must be 'positional' or 'fourier', got {kind!r}")
        self.channels, self.kind, self.num_classes = channels, kind, num_classes
        self.fourier = (
            FourierEmbedding(channels, fourier_scale, fourier_premultiplied, rngs=rngs) if kind == "fourier" else None
        )
        self.label = nnx.Embed(num_classes + 1, channels, rngs=rngs) if num_classes else None
        self.lin0 = nnx.Linear(channels, emb_channels, rngs=rngs)
        self.lin1 = nnx.Linear(emb_channels, emb_channels, rngs=rngs)

    def __call__(self, c_noise: jax.Array, batch: int, labels: jax.Array | None = None) -> jax.Array:
        c = jnp.broadcast_to(jnp.asarray(c_noise, jnp.float32).reshape(-1), (batch,))
        emb = positional_embedding(c, self.channels) if self.fourier is None else self.fourier(c)
        if self.label is not None:
            if labels is None:
                labels = jnp.full((batch,), self.num_classes, jnp.int32)  # unconditional token
            emb = emb + self.label(labels)
        return self.lin1(jax.nn.silu(self.lin0(emb)))


# ---- resampling with a separable FIR filter (DDPM++ box filter [1, 1], NCSN++ [1, 3, 3, 1]) -----------------------
def fir_kernel(taps, gain: float = 1.0) -> np.ndarray:
    """The 2-D filter ``gain · f fᵀ / (Σf)²`` of a 1-D tap list ``f`` (float64, NumPy)."""
    f = np.asarray(taps, np.float64)
    if f.ndim != 1 or f.size < 1 or not np.all(np.isfinite(f)) or f.sum() == 0:
        raise ValueError(
            f"a resampling filter is a non-empty 1-D list of finite taps with a non-zero sum; got {taps!r}"
        )
    return gain * np.outer(f, f) / f.sum() ** 2


def upfirdn2d(x: jax.Array, kernel, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> jax.Array:
    """Upsample by zero insertion (``up``), zero-pad ``pad = (before, after)`` on both image axes, convolve each
    channel with the 2-D ``kernel`` (a true convolution), keep every ``down``-th sample; ``x`` is NHWC.

    Output size per axis: ``(H·up + before + after − K) // down + 1``. One XLA depthwise convolution
    (``lhs_dilation`` does the zero insertion)."""
    c = x.shape[-1]
    k = jnp.asarray(np.asarray(kernel)[::-1, ::-1], x.dtype)  # correlation with the flipped kernel = convolution
    w = jnp.tile(k[:, :, None, None], (1, 1, 1, c))
    p0, p1 = pad
    return jax.lax.conv_general_dilated(
        x,
        w,
        (down, down),
        [(p0, p1 + up - 1)] * 2,
        lhs_dilation=(up, up),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )


def resample_down(x: jax.Array, taps=(1, 1)) -> jax.Array:
    """Halve the resolution: filter with ``f fᵀ/(Σf)²`` and keep every second sample (``[1, 1]``: 2×2 mean)."""
    if tuple(taps) == (1, 1):  # the box filter as a reshape and a mean: the same numbers, cheaper to compile and run
        b, h, w, c = x.shape
        return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    k = fir_kernel(taps)
    p = (k.shape[0] - 1) // 2
    return upfirdn2d(x, k, down=2, pad=(p, p))


def resample_up(x: jax.Array, taps=(1, 1)) -> jax.Array:
    """Double the resolution: zero insertion, then the filter ``4 f fᵀ/(Σf)²`` (``[1, 1]``: nearest neighbour); the
    transposed convolution of stride 2 and padding ``(K − 1)//2``."""
    if tuple(taps) == (1, 1):  # nearest neighbour as a repeat
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    k = fir_kernel(taps, gain=4.0)
    p = (k.shape[0] - 1) // 2
    return upfirdn2d(x, k, up=2, pad=(k.shape[0] - 1 - p, k.shape[0] - 2 - p))
