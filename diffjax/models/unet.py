"""The DDPM++ / NCSN++ UNet family (Song et al. 2021; the EDM code's ``SongUNet`` layout), channels-last, Flax NNX.

Encoder: a 3×3 input conv, then per resolution ``num_blocks`` residual blocks (channels ``model_channels·mult``)
and a down-sampling residual block between resolutions; decoder: two blocks at the lowest resolution (the first
with attention), then per resolution ``num_blocks + 1`` blocks fed with the encoder's skips and an up-sampling
residual block; output ``GroupNorm → SiLU → conv3×3``. Residual block:
``h = conv(SiLU(GN(x))); h = conv(dropout(SiLU(GN(h + W emb)))); x = (h + skip(x))·s`` (+ self-attention at the
``attn_resolutions``, also scaled by ``s = 1/√2``). Re-sampling filters with ``f fᵀ/(Σf)²``: the box ``[1, 1]``
(DDPM++) or ``[1, 3, 3, 1]`` (NCSN++), with a 1×1 projection on the skip path.

NCSN++ adds a progressive *input* path (``encoder='skip'``: the down-filtered image projected by a 1×1 conv and
added after each down-sampling; ``'residual'``: a strided 3×3 conv of the previous level's features, averaged in
with 1/√2) and a progressive *output* path (``decoder='skip'``: an image-space output at every resolution,
up-filtered and summed), Gaussian Fourier features of the noise label and a twice as wide noise embedding
(``noise_mult=2``). ``ddpmpp_cifar10()`` / ``ncsnpp_cifar10()`` are the EDM CIFAR-10 configurations.

``dtype`` is the compute dtype (``jnp.bfloat16`` for mixed precision; parameters stay float32). Attention uses
``jax.nn.dot_product_attention`` (cuDNN flash attention on GPUs when available).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from .layers import NoiseEmbedding, fir_kernel, resample_down, resample_up, upfirdn2d

ENCODERS = ("standard", "skip", "residual")
DECODERS = ("standard", "skip")


def _groups(channels: int) -> int:
    return min(32, channels // 4)


def _dropout(h, rate: float, key):
    """Inverted dropout with an explicit key (pure: no RNG state); identity without a key."""
    if key is None or rate <= 0:
        return h
    keep = jax.random.bernoulli(key, 1.0 - rate, h.shape)
    return jnp.where(keep, h / (1.0 - rate), 0).astype(h.dtype)


class ResBlock(nnx.Module):
    """The residual block of DDPM++, NCSN++ and ADM (EDM's ``UNetBlock``): ``h = conv(SiLU(GN(x)))`` (resampled with
    the filter ``resample_filter``), then ``+ A·emb`` or, with ``adaptive_scale`` (ADM), ``GN(h)·(1 + scale) + shift``,
    ``conv(dropout(SiLU(·)))``; output ``(h + skip(x))·skip_scale``, then optional multi-head self-attention
    ``(x + attn(x))·skip_scale``. The skip path is resampled, and projected by a 1×1 conv when the channels change
    or (``resample_proj``) when it is resampled."""

    def __init__(
        self,
        cin: int,
        cout: int,
        emb: int,
        resample: str | None = None,
        attention: bool = False,
        dropout: float = 0.0,
        dtype=jnp.float32,
        *,
        resample_filter: Sequence[int] = (1, 1),
        adaptive_scale: bool = False,
        skip_scale: float = 1 / math.sqrt(2),
        eps: float = 1e-6,
        resample_proj: bool = True,
        heads: int = 1,
        rngs: nnx.Rngs,
    ):
        kw = dict(rngs=rngs, dtype=dtype)
        if resample not in (None, "up", "down"):
            raise ValueError(f"resample must be None, 'up' or 'down', got {resample!r}")
        self.resample, self.filter = resample, tuple(resample_filter)
        self.adaptive_scale, self.skip_scale = adaptive_scale, float(skip_scale)
        self.norm0 = nnx.GroupNorm(cin, num_groups=_groups(cin), epsilon=eps, **kw)
        self.conv0 = nnx.Conv(cin, cout, (3, 3), **kw)
        self.affine = nnx.Linear(emb, cout * (2 if adaptive_scale else 1), **kw)
        self.norm1 = nnx.GroupNorm(cout, num_groups=_groups(cout), epsilon=eps, **kw)
        self.rate = float(dropout)
        self.conv1 = nnx.Conv(cout, cout, (3, 3), **kw)
        self.skip = nnx.Conv(cin, cout, (1, 1), **kw) if (cin != cout or (resample and resample_proj)) else None
        self.attention = attention
        self.heads = int(heads)
        if attention:
            if cout % self.heads:
                raise ValueError(f"{cout} channels do not split into {self.heads} attention heads")
            self.norm2 = nnx.GroupNorm(cout, num_groups=_groups(cout), epsilon=eps, **kw)
            self.qkv = nnx.Conv(cout, 3 * cout, (1, 1), **kw)
            self.proj = nnx.Conv(cout, cout, (1, 1), **kw)

    def _resample(self, x):
        if self.resample == "down":
            return resample_down(x, self.filter)
        if self.resample == "up":
            return resample_up(x, self.filter)
        return x

    def __call__(self, x, emb, dropout_key=None):
        h = self.conv0(self._resample(jax.nn.silu(self.norm0(x))))
        params = self.affine(emb)[:, None, None, :]
        if self.adaptive_scale:
            scale, shift = jnp.split(params, 2, axis=-1)
            h = jax.nn.silu(self.norm1(h) * (1 + scale) + shift)
        else:
            h = jax.nn.silu(self.norm1(h + params))
        h = self.conv1(_dropout(h, self.rate, dropout_key))
        skip = self._resample(x)
        if self.skip is not None:
            skip = self.skip(skip)
        x = (h + skip) * self.skip_scale
        if self.attention:
            b, hh, ww, c = x.shape
            q, k, v = (
                t.reshape(b, hh * ww, self.heads, c // self.heads)
                for t in jnp.split(self.qkv(self.norm2(x)), 3, axis=-1)
            )
            a = jax.nn.dot_product_attention(q, k, v).reshape(b, hh, ww, c)
            x = (self.proj(a) + x) * self.skip_scale
        return x


class UNet(nnx.Module):
    """``F_θ(x, c_noise[, labels]) → (B, H, W, out_channels)`` for images ``(B, H, W, C)``.

    Args:
      image_shape: ``(H, W, C)``; H and W divisible by ``2^(len(channel_mult) − 1)``.
      model_channels, channel_mult, num_blocks, attn_resolutions, dropout: the DDPM++ knobs.
      embedding: 'positional' (DDPM++) or 'fourier' (NCSN++) noise embedding; ``fourier_scale`` its frequency scale;
        ``noise_mult``: width of the noise embedding in units of ``model_channels`` (NCSN++: 2).
      encoder, decoder: 'standard' (DDPM++), 'skip' or 'residual' (NCSN++'s progressive input) / 'skip' (its
        progressive output); ``resample_filter``: [1, 1] (DDPM++) or [1, 3, 3, 1] (NCSN++).
      num_classes: > 0 adds class conditioning (and a null token for classifier-free guidance).
      in_mult, out_mult: channel multipliers of input/output (CLD: the state (x, v) has 2·C channels).
      dtype: compute dtype (bfloat16 for mixed precision).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        model_channels: int = 128,
        channel_mult: Sequence[int] = (2, 2, 2),
        num_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        embedding: str = "positional",
        num_classes: int = 0,
        in_mult: int = 1,
        out_mult: int = 1,
        dtype=jnp.float32,
        *,
        noise_mult: int = 1,
        fourier_scale: float = 16.0,
        encoder: str = "standard",
        decoder: str = "standard",
        resample_filter: Sequence[int] = (1, 1),
        fourier_premultiplied: bool = True,
        rngs: nnx.Rngs,
    ):
        h, w, c = (int(s) for s in image_shape)
        factor = 2 ** (len(channel_mult) - 1)
        if h % factor or w % factor:
            raise ValueError(f"image size {(h, w)} must be divisible by {factor} for {len(channel_mult)} resolutions")
        if encoder not in ENCODERS or decoder not in DECODERS:
            raise ValueError(
                f"encoder must be one of {ENCODERS} and decoder one of {DECODERS}; got {encoder!r}, {decoder!r}"
            )
        fir_kernel(resample_filter)  # validates the taps
        self.image_shape, self.dtype = (h, w, c), dtype
        self.encoder, self.decoder, self.filter = encoder, decoder, tuple(resample_filter)
        emb = 4 * model_channels
        kw = dict(rngs=rngs, dtype=dtype)
        bkw = dict(dropout=dropout, dtype=dtype, resample_filter=resample_filter, rngs=rngs)
        self.embed = NoiseEmbedding(
            model_channels * noise_mult, emb, embedding, num_classes, fourier_scale, fourier_premultiplied, rngs=rngs
        )
        cin, cout_img = c * in_mult, c * out_mult
        self.conv_in = nnx.Conv(cin, model_channels, (3, 3), **kw)
        enc, aux, skips, cout, caux = [], [], [model_channels], model_channels, cin
        for level, mult in enumerate(channel_mult):
            res = h >> level
            if level > 0:
                enc.append(ResBlock(cout, cout, emb, resample="down", **bkw))
                skips.append(cout)
                if encoder == "skip":  # 1×1 projection of the down-filtered input image
                    aux.append(nnx.Conv(caux, cout, (1, 1), **kw))
                elif encoder == "residual":  # 3×3 conv of the previous level, then the down filter (stride 2)
                    pad = 1 + (len(self.filter) - 1) // 2
                    aux.append(nnx.Conv(caux, cout, (3, 3), padding=((pad, pad), (pad, pad)), **kw))
                    caux = cout
            for _ in range(num_blocks):
                enc.append(ResBlock(cout, model_channels * mult, emb, attention=res in attn_resolutions, **bkw))
                cout = model_channels * mult
                skips.append(cout)
        self.enc = nnx.List(enc)
        self.enc_aux = nnx.List(aux) if aux else None
        self.mid = nnx.List([ResBlock(cout, cout, emb, attention=True, **bkw), ResBlock(cout, cout, emb, **bkw)])
        dec, out_norm, out_conv = [], [], []
        dec_layout = []  # per decoder block: does it take a skip?
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = h >> level
            if level < len(channel_mult) - 1:
                dec.append(ResBlock(cout, cout, emb, resample="up", **bkw))
                dec_layout.append(False)
            for idx in range(num_blocks + 1):
                cin_b = cout + skips.pop()
                cout = model_channels * mult
                dec.append(ResBlock(cin_b, cout, emb, attention=(idx == num_blocks and res in attn_resolutions), **bkw))
                dec_layout.append(True)
            if decoder == "skip" and level > 0:  # an image-space output at this resolution
                out_norm.append(nnx.GroupNorm(cout, num_groups=_groups(cout), epsilon=1e-6, **kw))
                out_conv.append(nnx.Conv(cout, cout_img, (3, 3), **kw))
        self.dec = nnx.List(dec)
        self.dec_layout = tuple(dec_layout)
        self.dec_aux_norm = nnx.List(out_norm) if out_norm else None
        self.dec_aux_conv = nnx.List(out_conv) if out_conv else None
        self.norm_out = nnx.GroupNorm(cout, num_groups=_groups(cout), epsilon=1e-6, **kw)
        self.conv_out = nnx.Conv(cout, cout_img, (3, 3), **kw)
        self.levels = len(channel_mult)
        self.num_blocks = num_blocks

    def __call__(
        self, x: jax.Array, c_noise: jax.Array, labels: jax.Array | None = None, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """``dropout_key`` switches dropout on (training); without it the network is deterministic."""
        out_dtype = x.dtype
        emb = jax.nn.silu(self.embed(c_noise, x.shape[0], labels)).astype(self.dtype)
        x = x.astype(self.dtype)
        h = self.conv_in(x)
        skips, aux = [h], x
        blocks = list(self.enc) + list(self.mid) + list(self.dec)
        keys = [None] * len(blocks) if dropout_key is None else list(jax.random.split(dropout_key, len(blocks)))
        downs = 0
        for block, k in zip(self.enc, keys):
            h = block(h, emb, k)
            if self.enc_aux is not None and block.resample == "down":
                conv = self.enc_aux[downs]
                downs += 1
                if self.encoder == "skip":
                    aux = resample_down(aux, self.filter)
                    h = h + conv(aux)
                else:  # padded conv, then the filter: the strided convolution with kernel conv ∗ filter
                    h = aux = (h + upfirdn2d(conv(aux), fir_kernel(self.filter), down=2)) * (1 / math.sqrt(2))
            skips.append(h)
        for block, k in zip(self.mid, keys[len(self.enc) :]):
            h = block(h, emb, k)
        out, level, seen, per_level = None, self.levels - 1, 0, self.num_blocks + 1
        for block, takes_skip, k in zip(self.dec, self.dec_layout, keys[len(self.enc) + len(self.mid) :]):
            if takes_skip:
                h = jnp.concatenate([h, skips.pop()], axis=-1)
            h = block(h, emb, k)
            seen += takes_skip
            if seen == per_level:  # the last block of a resolution
                seen = 0
                if level > 0 and self.dec_aux_norm is not None:
                    j = self.levels - 1 - level
                    tmp = self.dec_aux_conv[j](jax.nn.silu(self.dec_aux_norm[j](h)))
                    out = tmp if out is None else resample_up(out, self.filter) + tmp
                level -= 1
        tmp = self.conv_out(jax.nn.silu(self.norm_out(h)))
        out = tmp if out is None else resample_up(out, self.filter) + tmp
        return out.astype(out_dtype)


def ddpmpp_cifar10(
    num_classes: int = 0, dropout: float = 0.13, dtype=jnp.float32, rngs: nnx.Rngs | None = None
) -> UNet:
    """EDM's DDPM++ CIFAR-10 network: channels 128, multipliers (2, 2, 2), 4 blocks per resolution, attention at
    16×16, positional embedding."""
    return UNet(
        (32, 32, 3), 128, (2, 2, 2), 4, (16,), dropout, "positional", num_classes, dtype=dtype, rngs=rngs or nnx.Rngs(0)
    )


def ncsnpp_cifar10(
    num_classes: int = 0, dropout: float = 0.13, dtype=jnp.float32, rngs: nnx.Rngs | None = None
) -> UNet:
    """EDM's NCSN++ CIFAR-10 network: the DDPM++ layout with Fourier features (2× wide), a residual progressive
    input and the [1, 3, 3, 1] filter."""
    return UNet(
        (32, 32, 3),
        128,
        (2, 2, 2),
        4,
        (16,),
        dropout,
        "fourier",
        num_classes,
        dtype=dtype,
        noise_mult=2,
        encoder="residual",
        resample_filter=(1, 3, 3, 1),
        rngs=rngs or nnx.Rngs(0),
    )


def count_params(model: nnx.Module) -> int:
    """The number of trainable parameters of ``model``."""
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


OPTIONS = {
    "channels": 128,
    "channel_mult": (2, 2, 2),
    "num_blocks": 4,
    "attn_resolutions": (16,),
    "dropout": 0.0,
    "embedding": "positional",
    "noise_mult": 1,
    "fourier_scale": 16.0,
    "encoder": "standard",
    "decoder": "standard",
    "resample_filter": (1, 1),
}


def build(data_shape, options: dict, **common) -> UNet:
    """The registry's builder: ``options`` from a config's ``model`` section (the keys of ``OPTIONS``; others are
    the config's own, such as ``kind``)."""
    o = {k: options.get(k, v) for k, v in OPTIONS.items()}
    return UNet(
        data_shape,
        o["channels"],
        tuple(o["channel_mult"]),
        o["num_blocks"],
        tuple(o["attn_resolutions"]),
        o["dropout"],
        o["embedding"],
        noise_mult=o["noise_mult"],
        fourier_scale=o["fourier_scale"],
        encoder=o["encoder"],
        decoder=o["decoder"],
        resample_filter=tuple(o["resample_filter"]),
        **common,
    )
