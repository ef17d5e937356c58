"""diffusers' ``UNet2DModel`` in Flax NNX, channels-last, with the same module tree (so its weights map by name).

The architecture of the original DDPM (Ho et al. 2020) as diffusers configures it, and of its ports of NCSN++
(Song et al. 2021). From the config (the ``config.json`` fields of diffusers, with diffusers' defaults for absent
ones): a 3×3 input conv; the noise label embedded by sinusoids (``positional``: ``flip_sin_to_cos``, ``freq_shift``)
or Gaussian Fourier features of ``log σ`` (``fourier``), then ``Linear → SiLU → Linear``; down blocks of
``layers_per_block`` residual blocks (``DownBlock2D``; with attention ``AttnDownBlock2D``; NCSN++'s progressive
input ``SkipDownBlock2D`` / ``AttnSkipDownBlock2D``), a mid block (residual, attention, residual), up blocks of
``layers_per_block + 1`` residual blocks fed with the skips, ``GroupNorm → SiLU → conv3×3``. Residual block:
``h = conv(SiLU(GN(x))) + W SiLU(emb)`` (or ``GN(h)(1 + scale) + shift`` with ``resnet_time_scale_shift =
'scale_shift'``), ``conv(dropout(SiLU(GN(h))))``, output ``(shortcut(x) + h)/output_scale_factor``. A Fourier model
returns its output divided by the noise level (a score).

Supported: the four plain and the four skip block types, ``time_embedding_type`` positional/fourier, class
labels through ``num_class_embeds``, ``downsample_type``/``upsample_type`` conv or resnet. Anything else in a config
is refused by :func:`check_config` with the field's name.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .layers import resample_down, resample_up

DOWN = ("DownBlock2D", "AttnDownBlock2D", "SkipDownBlock2D", "AttnSkipDownBlock2D")
UP = ("UpBlock2D", "AttnUpBlock2D", "SkipUpBlock2D", "AttnSkipUpBlock2D")
FIR = (1, 3, 3, 1)

# UNet2DModel's defaults (diffusers) for fields a config.json may leave out
DEFAULTS: dict[str, Any] = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (224, 448, 672, 896),
    "layers_per_block": 2,
    "mid_block_scale_factor": 1.0,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}
IGNORED = ("_class_name", "_diffusers_version", "_name_or_path", "_use_default_values")


def check_config(config: dict, where: str = "config.json") -> dict:
    """The config with diffusers' defaults filled in; ValueError naming the first field this port does not support."""
    unknown = sorted(k for k in config if k not in DEFAULTS and k not in IGNORED)
    if unknown:
        raise ValueError(f"{where}: unknown UNet2DModel field(s) {unknown}; this port knows {sorted(DEFAULTS)}")
    c = {**DEFAULTS, **{k: v for k, v in config.items() if k in DEFAULTS}}
    name = config.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise ValueError(f"{where}: _class_name is {name!r}; only UNet2DModel is supported (not latent or text models)")
    checks = [
        ("time_embedding_type", c["time_embedding_type"] in ("positional", "fourier"), "'positional' or 'fourier'"),
        ("act_fn", c["act_fn"] in ("silu", "swish"), "'silu'"),
        ("mid_block_type", c["mid_block_type"] == "UNetMidBlock2D", "'UNetMidBlock2D'"),
        (
            "resnet_time_scale_shift",
            c["resnet_time_scale_shift"] in ("default", "scale_shift"),
            "'default' or 'scale_shift'",
        ),
        ("class_embed_type", c["class_embed_type"] is None, "null (labels through num_class_embeds)"),
        ("downsample_type", c["downsample_type"] in ("conv", "resnet"), "'conv' or 'resnet'"),
        ("upsample_type", c["upsample_type"] in ("conv", "resnet"), "'conv' or 'resnet'"),
        ("down_block_types", all(t in DOWN for t in c["down_block_types"]), f"each one of {DOWN}"),
        ("up_block_types", all(t in UP for t in c["up_block_types"]), f"each one of {UP}"),
        (
            "block_out_channels",
            len(c["block_out_channels"]) == len(c["down_block_types"]) == len(c["up_block_types"]),
            "as many entries as down_block_types and up_block_types",
        ),
        ("time_embedding_dim", c["time_embedding_dim"] in (None, 4 * c["block_out_channels"][0]), "null"),
    ]
    for field, ok, expected in checks:
        if not ok:
            raise ValueError(f"{where}: {field} = {c[field]!r} is not supported; expected {expected}")
    return c


def _gn(channels, groups, eps):
    if channels % groups:
        raise ValueError(f"GroupNorm: {channels} channels do not split into {groups} groups")
    return nnx.GroupNorm(channels, num_groups=groups, epsilon=eps, rngs=nnx.Rngs(0))


def _conv(cin, cout, k, rngs, padding=None):
    p = k // 2 if padding is None else padding
    return nnx.Conv(cin, cout, (k, k), padding=((p, p), (p, p)), rngs=rngs)


class Holder(nnx.Module):
    """A module holding one convolution as ``conv`` (diffusers' ``Downsample2D``/``Upsample2D`` with a conv)."""

    def __init__(self, conv):
        self.conv = conv


class Resnet(nnx.Module):
    """``ResnetBlock2D``; ``resample`` 'up'/'down' resamples both paths after the first norm (nearest / 2×2 mean,
    or the [1, 3, 3, 1] filter with ``fir``)."""

    def __init__(
        self,
        cin,
        cout,
        temb,
        groups,
        eps,
        scale=1.0,
        groups_out=None,
        shift=False,
        resample=None,
        fir=False,
        shortcut=None,
        dropout=0.0,
        *,
        rngs,
    ):
        self.norm1 = _gn(cin, groups, eps)
        self.conv1 = _conv(cin, cout, 3, rngs)
        self.time_emb_proj = nnx.Linear(temb, cout * (2 if shift else 1), rngs=rngs)
        self.norm2 = _gn(cout, groups_out or groups, eps)
        self.conv2 = _conv(cout, cout, 3, rngs)
        use = cin != cout if shortcut is None else shortcut
        self.conv_shortcut = _conv(cin, cout, 1, rngs) if use else None
        self.shift, self.scale, self.resample, self.taps = shift, float(scale), resample, FIR if fir else (1, 1)
        self.rate = float(dropout)

    def __call__(self, x, temb):
        h = jax.nn.silu(self.norm1(x))
        if self.resample:
            f = resample_up if self.resample == "up" else resample_down
            x, h = f(x, self.taps), f(h, self.taps)
        h = self.conv1(h)
        t = self.time_emb_proj(jax.nn.silu(temb))[:, None, None, :]
        if self.shift:
            scale, shift = jnp.split(t, 2, axis=-1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + t)
        h = self.conv2(jax.nn.silu(h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.scale


class Attention(nnx.Module):
    """Self-attention over the pixels: ``GroupNorm`` (optional), ``to_q/to_k/to_v``, ``heads`` heads with scale
    ``1/√d``, ``to_out``, residual, divided by ``scale``."""

    def __init__(self, c, heads, groups, eps, scale=1.0, *, rngs):
        self.group_norm = _gn(c, groups, eps) if groups else None
        self.to_q, self.to_k, self.to_v = (nnx.Linear(c, c, rngs=rngs) for _ in range(3))
        self.to_out = nnx.Linear(c, c, rngs=rngs)
        self.heads, self.scale = max(int(heads), 1), float(scale)

    def __call__(self, x):
        b, hh, ww, c = x.shape
        h = self.group_norm(x) if self.group_norm is not None else x
        h = h.reshape(b, hh * ww, c)
        q, k, v = (f(h).reshape(b, hh * ww, self.heads, c // self.heads) for f in (self.to_q, self.to_k, self.to_v))
        a = jax.nn.dot_product_attention(q, k, v).reshape(b, hh * ww, c)
        return (self.to_out(a).reshape(b, hh, ww, c) + x) / self.scale


def _block_setup(kind, cout, c, rngs):
    """What the four down/up block kinds share: (skip?, attention?, eps, groups, head size, output scale, resnet kw)."""
    skip = "Skip" in kind
    kw = dict(shift=c["resnet_time_scale_shift"] == "scale_shift", dropout=c["dropout"], rngs=rngs)
    return (
        skip,
        kind.startswith("Attn"),
        c["norm_eps"],
        c["norm_num_groups"],
        c["attention_head_dim"] or cout,
        math.sqrt(2.0) if skip else 1.0,
        kw,
    )


class Down(nnx.Module):
    """A down block (``DownBlock2D``, ``AttnDownBlock2D``, ``SkipDownBlock2D``, ``AttnSkipDownBlock2D``)."""

    def __init__(self, kind, cin, cout, temb, layers, last, c, *, rngs):
        skip, attn, eps, groups, head, scale, kw = _block_setup(kind, cout, c, rngs)
        res = []
        for i in range(layers):
            ci = cin if i == 0 else cout
            g = (min(ci // 4, 32), min(cout // 4, 32)) if skip else (groups, None)
            res.append(Resnet(ci, cout, temb, g[0], eps, scale, g[1], **kw))
        self.resnets = nnx.List(res)
        agroups = 32 if skip else groups
        self.attentions = (
            nnx.List([Attention(cout, cout // head, agroups, eps, scale, rngs=rngs) for _ in range(layers)])
            if attn
            else None
        )
        self.skip, self.pad = skip, c["downsample_padding"]
        downsample = downsamplers = resnet_down = skip_conv = None
        if last:
            pass
        elif skip:
            resnet_down = Resnet(
                cout, cout, temb, min(cout // 4, 32), eps, scale, resample="down", fir=True, shortcut=True, **kw
            )
            skip_conv = _conv(c["in_channels"], cout, 1, rngs)
        elif attn and c["downsample_type"] == "resnet":
            downsample = "resnet"
            downsamplers = nnx.List([Resnet(cout, cout, temb, groups, eps, resample="down", **kw)])
        else:
            downsample = "conv"
            downsamplers = nnx.List(
                [
                    Holder(
                        nnx.Conv(
                            cout,
                            cout,
                            (3, 3),
                            strides=2,
                            padding=((self.pad, self.pad), (self.pad, self.pad)),
                            rngs=rngs,
                        )
                    )
                ]
            )
        self.downsample, self.downsamplers, self.resnet_down, self.skip_conv = (
            downsample,
            downsamplers,
            resnet_down,
            skip_conv,
        )

    def __call__(self, h, temb, skip_sample):
        out = []
        for i, r in enumerate(self.resnets):
            h = r(h, temb)
            if self.attentions is not None:
                h = self.attentions[i](h)
            out.append(h)
        if self.skip and self.resnet_down is not None:
            h = self.resnet_down(h, temb)
            skip_sample = resample_down(skip_sample, FIR)
            h = self.skip_conv(skip_sample) + h
            out.append(h)
        elif self.downsample == "resnet":
            h = self.downsamplers[0](h, temb)
            out.append(h)
        elif self.downsample == "conv":
            if self.pad == 0:  # diffusers pads (0, 1) on both axes, then convolves without padding
                h = jnp.pad(h, ((0, 0), (0, 1), (0, 1), (0, 0)))
            h = self.downsamplers[0].conv(h)
            out.append(h)
        return h, out, skip_sample


class Up(nnx.Module):
    """An up block (``UpBlock2D``, ``AttnUpBlock2D``, ``SkipUpBlock2D``, ``AttnSkipUpBlock2D``)."""

    def __init__(self, kind, cin, prev, cout, temb, layers, last, c, *, rngs):
        skip, attn, eps, groups, head, scale, kw = _block_setup(kind, cout, c, rngs)
        res = []
        for i in range(layers):
            rskip = cin if i == layers - 1 else cout
            rin = prev if i == 0 else cout
            if kind == "AttnSkipUpBlock2D":  # diffusers' grouping for this block: min(rin + rskip // 4, 32)
                g = (min(rin + rskip // 4, 32), min(cout // 4, 32))
            elif skip:
                g = (min((rin + rskip) // 4, 32), min(cout // 4, 32))
            else:
                g = (groups, None)
            res.append(Resnet(rin + rskip, cout, temb, g[0], eps, scale, g[1], **kw))
        self.resnets = nnx.List(res)
        self.skip, self.kind = skip, kind
        n = 1 if skip else layers
        self.attentions = (
            nnx.List([Attention(cout, cout // head, 32 if skip else groups, eps, scale, rngs=rngs) for _ in range(n)])
            if attn
            else None
        )
        upsample = upsamplers = resnet_up = skip_conv = skip_norm = None
        if skip:
            if not last:
                resnet_up = Resnet(
                    cout,
                    cout,
                    temb,
                    min(cout // 4, 32),
                    eps,
                    scale,
                    min(cout // 4, 32),
                    resample="up",
                    fir=True,
                    shortcut=True,
                    **kw,
                )
                skip_norm = _gn(cout, min(cout // 4, 32), eps)
                skip_conv = _conv(cout, c["out_channels"], 3, rngs)
        elif not last:
            if attn and c["upsample_type"] == "resnet":
                upsample = "resnet"
                upsamplers = nnx.List([Resnet(cout, cout, temb, groups, eps, resample="up", **kw)])
            else:
                upsample = "conv"
                upsamplers = nnx.List([Holder(_conv(cout, cout, 3, rngs))])
        self.upsample, self.upsamplers, self.resnet_up = upsample, upsamplers, resnet_up
        self.skip_conv, self.skip_norm = skip_conv, skip_norm

    def __call__(self, h, skips, temb, skip_sample):
        for i, r in enumerate(self.resnets):
            h = r(jnp.concatenate([h, skips.pop()], axis=-1), temb)
            if self.attentions is not None and not self.skip:
                h = self.attentions[i](h)
        if self.skip:
            if self.attentions is not None:
                h = self.attentions[0](h)
            skip_sample = 0.0 if skip_sample is None else resample_up(skip_sample, FIR)
            if self.resnet_up is not None:
                skip_sample = skip_sample + self.skip_conv(jax.nn.silu(self.skip_norm(h)))
                h = self.resnet_up(h, temb)
        elif self.upsample == "resnet":
            h = self.upsamplers[0](h, temb)
        elif self.upsample == "conv":
            h = self.upsamplers[0].conv(resample_up(h))
        return h, skip_sample


class FourierProjection(nnx.Module):
    """``[sin(2π log(c) w), cos(2π log(c) w)]`` with fixed ``w ~ N(0, 16²)``."""

    def __init__(self, size, scale=16.0, *, rngs):
        self.weight = nnx.Variable(jax.random.normal(rngs.params(), (size,)) * scale)

    def __call__(self, c):
        arg = jnp.log(c)[:, None] * self.weight[...][None, :] * (2 * np.pi)
        return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


class TimestepEmbedding(nnx.Module):
    """``Linear → SiLU → Linear`` on the time features."""

    def __init__(self, cin, cout, *, rngs):
        self.linear_1 = nnx.Linear(cin, cout, rngs=rngs)
        self.linear_2 = nnx.Linear(cout, cout, rngs=rngs)

    def __call__(self, x):
        return self.linear_2(jax.nn.silu(self.linear_1(x)))


class DiffusersUNet2D(nnx.Module):
    """``UNet2DModel(config)``: ``net(x, timestep, labels=None)`` on NHWC images; the timestep as diffusers takes it
    (a DDPM step index, fractional allowed, or the noise level σ of a Fourier model). ``config``: the fields of
    ``config.json`` (see :func:`check_config`). Only float32 parameters (the original's)."""

    def __init__(self, config: dict, *, rngs: nnx.Rngs | None = None):
        c = check_config(dict(config))
        rngs = rngs or nnx.Rngs(0)
        self.config = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in c.items()))  # hashable
        self.flip_sin_to_cos, self.freq_shift = bool(c["flip_sin_to_cos"]), float(c["freq_shift"])
        self.center_input = bool(c["center_input_sample"])
        self.channels0 = int(c["block_out_channels"][0])
        ch = list(c["block_out_channels"])
        temb = 4 * ch[0]
        self.fourier = c["time_embedding_type"] == "fourier"
        self.time_proj = FourierProjection(ch[0], rngs=rngs) if self.fourier else None
        self.time_embedding = TimestepEmbedding(2 * ch[0] if self.fourier else ch[0], temb, rngs=rngs)
        self.num_classes = int(c["num_class_embeds"] or 0)
        self.class_embedding = nnx.Embed(self.num_classes, temb, rngs=rngs) if self.num_classes else None
        self.conv_in = _conv(c["in_channels"], ch[0], 3, rngs)
        n, layers = len(ch), c["layers_per_block"]
        down, cout = [], ch[0]
        for i, kind in enumerate(c["down_block_types"]):
            cin, cout = cout, ch[i]
            down.append(Down(kind, cin, cout, temb, layers, i == n - 1, c, rngs=rngs))
        self.down_blocks = nnx.List(down)
        mid_groups = c["attn_norm_num_groups"] or (
            c["norm_num_groups"] if c["resnet_time_scale_shift"] == "default" else None
        )
        head = c["attention_head_dim"] or ch[-1]
        kw = dict(shift=c["resnet_time_scale_shift"] == "scale_shift", dropout=c["dropout"], rngs=rngs)
        s = c["mid_block_scale_factor"]
        self.mid_block = MidBlock(
            ch[-1], temb, c["norm_num_groups"], c["norm_eps"], s, head, mid_groups, c["add_attention"], kw, rngs=rngs
        )
        rev = ch[::-1]
        up, cout = [], rev[0]
        for i, kind in enumerate(c["up_block_types"]):
            prev, cout = cout, rev[i]
            cin = rev[min(i + 1, n - 1)]
            up.append(Up(kind, cin, prev, cout, temb, layers + 1, i == n - 1, c, rngs=rngs))
        self.up_blocks = nnx.List(up)
        self.conv_norm_out = _gn(ch[0], c["norm_num_groups"] or min(ch[0] // 4, 32), c["norm_eps"])
        self.conv_out = _conv(ch[0], c["out_channels"], 3, rngs)
        self.skip_input = any("Skip" in t for t in c["down_block_types"])

    def embed(self, timestep, batch):
        """``(timesteps (B,), embedding (B, 4·C₀))`` of the timestep as diffusers computes them."""
        t = jnp.broadcast_to(jnp.asarray(timestep, jnp.float32).reshape(-1), (batch,))
        if self.fourier:
            e = self.time_proj(t)
        else:
            e = timestep_embedding(t, self.channels0, self.flip_sin_to_cos, self.freq_shift)
        return t, self.time_embedding(e)

    def __call__(
        self,
        x: jax.Array,
        timestep: jax.Array,
        labels: jax.Array | None = None,
        *,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        """``dropout_key`` is accepted for the network protocol; the port runs deterministically (inference)."""
        out_dtype = x.dtype
        x = x.astype(jnp.float32)
        if self.center_input:
            x = 2 * x - 1.0
        t, emb = self.embed(timestep, x.shape[0])
        if self.class_embedding is not None:
            if labels is None:
                raise ValueError("this diffusers model is class-conditional: pass labels")
            emb = emb + self.class_embedding(labels)
        elif labels is not None:
            raise ValueError("this diffusers model has no class embedding (num_class_embeds is null): labels given")
        skip_sample = x
        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            h, out, skip_sample = block(h, emb, skip_sample)
            skips += out
        h = self.mid_block(h, emb)
        skip_sample = None
        for block in self.up_blocks:
            h, skip_sample = block(h, skips, emb, skip_sample)
        h = self.conv_out(jax.nn.silu(self.conv_norm_out(h)))
        if skip_sample is not None:
            h = h + skip_sample
        if self.fourier:
            h = h / t[:, None, None, None]
        return h.astype(out_dtype)


class MidBlock(nnx.Module):
    """``UNetMidBlock2D``: residual, then (attention, residual)."""

    def __init__(self, c, temb, groups, eps, scale, head, attn_groups, add_attention, kw, *, rngs):
        groups = groups or min(c // 4, 32)
        self.resnets = nnx.List([Resnet(c, c, temb, groups, eps, scale, **kw) for _ in range(2)])
        self.attentions = (
            nnx.List([Attention(c, c // head, attn_groups, eps, scale, rngs=rngs)]) if add_attention else None
        )

    def __call__(self, h, temb):
        h = self.resnets[0](h, temb)
        if self.attentions is not None:
            h = self.attentions[0](h)
        return self.resnets[1](h, temb)


def timestep_embedding(t, dim, flip_sin_to_cos=False, shift=1.0, max_period=10000.0):
    """DDPM's sinusoids: ``[sin(t f_k), cos(t f_k)]`` (``flip_sin_to_cos``: cos first), ``f_k = e^{−ln(P) k/(d/2 −
    shift)}``, padded with a zero for odd ``dim``."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - shift))
    arg = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.cos(arg), jnp.sin(arg)] if flip_sin_to_cos else [jnp.sin(arg), jnp.cos(arg)], -1)
    return jnp.pad(emb, ((0, 0), (0, dim % 2)))
