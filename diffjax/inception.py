"""The Inception-v3 feature extractor of the Fréchet Inception Distance, in Flax NNX.

FID (Heusel et al., 2017) compares the Gaussian moments of 2048-d pool features of real and generated images.
Every published number (EDM, DPM-Solver, DLG, …) uses the *2015-12-05* TensorFlow Inception graph as ported by
pytorch-fid; this module reproduces that network:

* input images in ``[0, 1]`` (NHWC, 1 or 3 channels; 1 is repeated), resized to 299×299 by bilinear interpolation
  with half-pixel centres and no anti-aliasing, then mapped to ``[−1, 1]``;
* the torchvision Inception-v3 trunk (every convolution is conv → batch norm (ε = 1e-3) → ReLU) with the graph's
  quirks: the average pools inside the A, C and first E blocks exclude the padding from their count, and the last
  E block pools with a *max* pool;
* global average pooling to 2048 features.

No weights ship with diffjax and nothing is downloaded: :func:`load_weights` reads a file the user supplies
(``.npz`` written by ``python -m diffjax.inception convert``, or pytorch-fid's ``pt_inception-2015-12-05-*.pth``
directly when torch is installed). See docs/GUIDE.md, "Evaluating a model".
"""

from __future__ import annotations

import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

WEIGHTS_ENV = "DIFFJAX_INCEPTION"  # default location of the weights file
WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_NAME
FEATURES = 2048


class ConvBN(nnx.Module):
    """Convolution without bias, batch norm in inference mode (ε = 1e-3), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=(0, 0), *, rngs: nnx.Rngs):
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        self.conv = nnx.Conv(
            cin, cout, kernel, strides=stride, padding=[(p, p) for p in padding], use_bias=False, rngs=rngs
        )
        self.bn = nnx.BatchNorm(cout, epsilon=1e-3, use_running_average=True, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(self.bn(self.conv(x)))


def max_pool(x, window: int = 3, stride: int = 2, pad: int = 0):
    """Max pool over the spatial axes of NHWC ``x`` (padding with −∞)."""
    return jax.lax.reduce_window(
        x,
        -jnp.inf,
        jax.lax.max,
        (1, window, window, 1),
        (1, stride, stride, 1),
        [(0, 0), (pad, pad), (pad, pad), (0, 0)],
    )


def avg_pool_exclusive(x):
    """3×3 average pool, stride 1, padding 1, dividing by the number of *valid* inputs (count_include_pad=False)."""
    pad = [(0, 0), (1, 1), (1, 1), (0, 0)]
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pad)
    count = jax.lax.reduce_window(jnp.ones(x.shape[1:3], x.dtype), 0.0, jax.lax.add, (3, 3), (1, 1), pad[1:3])
    return total / count[None, :, :, None]


class BlockA(nnx.Module):
    """Inception-A (Mixed_5b–5d): 1×1, 5×5, double 3×3 and pooled branches."""

    def __init__(self, cin: int, pool_features: int, *, rngs):
        self.branch1x1 = ConvBN(cin, 64, 1, rngs=rngs)
        self.branch5x5_1 = ConvBN(cin, 48, 1, rngs=rngs)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1, rngs=rngs)
        self.branch_pool = ConvBN(cin, pool_features, 1, rngs=rngs)

    def __call__(self, x):
        return jnp.concatenate(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(avg_pool_exclusive(x)),
            ],
            -1,
        )


class BlockB(nnx.Module):
    """Inception-B (Mixed_6a): grid reduction by strided 3×3 branches and a max pool."""

    def __init__(self, cin: int, *, rngs):
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2, rngs=rngs)

    def __call__(self, x):
        return jnp.concatenate(
            [self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))), max_pool(x)], -1
        )


class BlockC(nnx.Module):
    """Inception-C (Mixed_6b–6e): factorised 7×7 branches (1×7 and 7×1)."""

    def __init__(self, cin: int, c7: int, *, rngs):
        self.branch1x1 = ConvBN(cin, 192, 1, rngs=rngs)
        self.branch7x7_1 = ConvBN(cin, c7, 1, rngs=rngs)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1, rngs=rngs)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch_pool = ConvBN(cin, 192, 1, rngs=rngs)

    def __call__(self, x):
        dbl = x
        for i in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{i}")(dbl)
        return jnp.concatenate(
            [
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                dbl,
                self.branch_pool(avg_pool_exclusive(x)),
            ],
            -1,
        )


class BlockD(nnx.Module):
    """Inception-D (Mixed_7a): grid reduction to 8×8."""

    def __init__(self, cin: int, *, rngs):
        self.branch3x3_1 = ConvBN(cin, 192, 1, rngs=rngs)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1, rngs=rngs)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2, rngs=rngs)

    def __call__(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return jnp.concatenate([self.branch3x3_2(self.branch3x3_1(x)), b7, max_pool(x)], -1)


class BlockE(nnx.Module):
    """``pool='avg'`` (exclusive average, Mixed_7b) or ``'max'`` (Mixed_7c, the 2015 graph's quirk)."""

    def __init__(self, cin: int, pool: str, *, rngs):
        self.pool = pool
        self.branch1x1 = ConvBN(cin, 320, 1, rngs=rngs)
        self.branch3x3_1 = ConvBN(cin, 384, 1, rngs=rngs)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1, rngs=rngs)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch_pool = ConvBN(cin, 192, 1, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3_1(x)
        b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], -1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = jnp.concatenate([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], -1)
        pooled = max_pool(x, 3, 1, 1) if self.pool == "max" else avg_pool_exclusive(x)
        return jnp.concatenate([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], -1)


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` bilinear interpolation weights, half-pixel centres, no anti-aliasing: output ``i`` reads
    the source coordinate ``max((i + ½) n_in/n_out − ½, 0)``."""
    src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1.0 - w1)
    np.add.at(m, (np.arange(n_out), i1), w1)
    return m


class InceptionV3(nnx.Module):
    """FID Inception-v3: ``images (B, H, W, C) in [0, 1] -> pool features (B, 2048)``."""

    def __init__(self, *, rngs: nnx.Rngs | None = None):
        rngs = rngs or nnx.Rngs(0)
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3, rngs=rngs)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3, rngs=rngs)
        self.Mixed_5b = BlockA(192, 32, rngs=rngs)
        self.Mixed_5c = BlockA(256, 64, rngs=rngs)
        self.Mixed_5d = BlockA(288, 64, rngs=rngs)
        self.Mixed_6a = BlockB(288, rngs=rngs)
        self.Mixed_6b = BlockC(768, 128, rngs=rngs)
        self.Mixed_6c = BlockC(768, 160, rngs=rngs)
        self.Mixed_6d = BlockC(768, 160, rngs=rngs)
        self.Mixed_6e = BlockC(768, 192, rngs=rngs)
        self.Mixed_7a = BlockD(768, rngs=rngs)
        self.Mixed_7b = BlockE(1280, "avg", rngs=rngs)
        self.Mixed_7c = BlockE(2048, "max", rngs=rngs)

    def __call__(self, images):
        x = jnp.asarray(images, jnp.float32)
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"Inception takes images (B, H, W, C) with C in (1, 3), got shape {x.shape}")
        if x.shape[-1] == 1:
            x = jnp.repeat(x, 3, axis=-1)
        rh = jnp.asarray(resize_matrix(x.shape[1], 299), jnp.float32)
        rw = jnp.asarray(resize_matrix(x.shape[2], 299), jnp.float32)
        x = jnp.einsum("ih,bhwc,jw->bijc", rh, x, rw, precision=jax.lax.Precision.HIGHEST)
        x = 2.0 * x - 1.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = max_pool(x)
        x = max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        for name in (
            "Mixed_5b",
            "Mixed_5c",
            "Mixed_5d",
            "Mixed_6a",
            "Mixed_6b",
            "Mixed_6c",
            "Mixed_6d",
            "Mixed_6e",
            "Mixed_7a",
            "Mixed_7b",
            "Mixed_7c",
        ):
            x = getattr(self, name)(x)
        return jnp.mean(x, axis=(1, 2))


# ---- weights ------------------------------------------------------------------------------------------
_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _target(key: str):
    """torchvision parameter name -> (NNX path, transform); None for names the feature extractor does not use."""
    parts = key.split(".")
    if parts[0] in ("fc", "AuxLogits") or parts[-1] == "num_batches_tracked":
        return None
    if parts[-2] == "conv" and parts[-1] == "weight":
        return tuple(parts[:-1]) + ("kernel",), lambda w: np.transpose(w, (2, 3, 1, 0))  # OIHW -> HWIO
    if parts[-2] == "bn" and parts[-1] in _BN:
        return tuple(parts[:-1]) + (_BN[parts[-1]],), lambda w: w
    raise ValueError(f"unexpected parameter {key!r} in the Inception weights")


def missing_weights_message(path: str | None) -> str:
    """What to do when the weights file is missing: where to get it and how to convert it."""
    where = f"{path!r} does not exist" if path else f"no weights file given (argument or ${WEIGHTS_ENV})"
    return (
        f"Inception weights for FID: {where}. diffjax never downloads them. On a connected machine fetch "
        f"{WEIGHTS_URL} (pytorch-fid's port of the 2015-12-05 TensorFlow graph), then either pass the .pth "
        f"(needs torch) or convert it once: `python -m diffjax.inception convert {WEIGHTS_NAME} "
        f"inception_fid.npz` (needs torch), copy the .npz here and pass its path (or set ${WEIGHTS_ENV})."
    )


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """Arrays by torchvision name from an ``.npz`` or a torch ``.pth`` state dict (the latter needs torch)."""
    if not path or not os.path.exists(path):
        raise FileNotFoundError(missing_weights_message(path))
    if path.endswith(".npz"):
        with np.load(path) as f:
            return {k: np.asarray(f[k]) for k in f.files}
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            f"reading {path!r} needs torch; convert it to .npz on a machine with torch: "
            f"python -m diffjax.inception convert {path} inception_fid.npz"
        ) from err
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.detach().cpu().numpy() for k, v in sd.items()}


def load_weights(net: InceptionV3, source: str | dict[str, Any]) -> InceptionV3:
    """Copy torchvision-named weights (a path, or a name → array dict) into ``net``; every parameter of the
    network must be given once with its exact shape. Everything is checked before anything is copied, so a
    failed load leaves ``net`` as it was."""
    sd = read_state_dict(source) if isinstance(source, str) else source
    state = nnx.state(net)
    flat = {tuple(str(p) for p in path): v for path, v in nnx.to_flat_state(state)}
    arrays = {}
    for key, value in sd.items():
        tgt = _target(key)
        if tgt is None:
            continue
        path, fn = tgt
        if path not in flat:
            raise ValueError(f"parameter {key!r} has no place in the FID Inception network (is it another model?)")
        arr = fn(np.asarray(value, np.float32))
        if arr.shape != flat[path].get_value().shape:
            raise ValueError(
                f"parameter {key!r}: shape {arr.shape} (after layout change) != expected {flat[path].get_value().shape}"
            )
        arrays[path] = arr
    missing = sorted(".".join(p) for p in flat if p not in arrays)
    if missing:
        raise ValueError(f"the weights miss {len(missing)} parameters, e.g. {missing[:3]}")
    for path, arr in arrays.items():
        flat[path].set_value(jnp.asarray(arr))
    nnx.update(net, state)
    return net


def abstract_network() -> InceptionV3:
    """The network's structure with shape-only parameters (no initialization cost); fill it with load_weights."""
    return nnx.eval_shape(lambda: InceptionV3(rngs=nnx.Rngs(0)))


def parameter_shapes() -> dict[str, tuple]:
    """Every parameter's torchvision name and (torch-layout) shape."""
    return {k: v.shape for k, v in state_dict(abstract_network(), arrays=False).items()}


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights of the right names and shapes (He-scaled convolutions, batch-norm scales and variances in
    [0.5, 1.5], small shifts): for tests and cross-checks, never for reported FIDs."""
    rng = np.random.default_rng(seed)

    def draw(name, shape):
        if name.endswith("conv.weight"):
            return rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        if name.endswith(("bn.weight", "running_var")):
            return rng.uniform(0.5, 1.5, shape)
        return rng.normal(0, 0.1, shape)

    return {k: draw(k, s).astype(np.float32) for k, s in parameter_shapes().items()}


def state_dict(net: InceptionV3, arrays: bool = True) -> dict[str, Any]:
    """The network's weights under torchvision names (inverse of :func:`load_weights`); with ``arrays=False``
    shape-only stand-ins (for an abstract network)."""
    inv = {v: k for k, v in _BN.items()}
    out = {}
    for path, v in nnx.to_flat_state(nnx.state(net)):
        path = tuple(str(p) for p in path)
        kernel = path[-1] == "kernel"  # HWIO here, OIHW in torch
        name = ".".join(path[:-1]) + (".weight" if kernel else "." + inv[path[-1]])
        value = v.get_value()
        if arrays:
            out[name] = np.transpose(np.asarray(value), (3, 2, 0, 1)) if kernel else np.asarray(value)
        else:
            shape = tuple(value.shape)
            out[name] = jax.ShapeDtypeStruct((shape[3], shape[2], shape[0], shape[1]) if kernel else shape, value.dtype)
    return out


def feature_extractor(weights: str | None = None):
    """A jitted ``images -> (B, 2048)`` function with the weights at ``weights`` (default ``$DIFFJAX_INCEPTION``)."""
    path = weights or os.environ.get(WEIGHTS_ENV)
    net = load_weights(abstract_network(), read_state_dict(path))
    graphdef, state = nnx.split(net)

    @jax.jit
    def features(state, images):
        return nnx.merge(graphdef, state)(images)

    return lambda images: features(state, images)


def _main(argv):
    if len(argv) != 3 or argv[0] != "convert":
        raise SystemExit("usage: python -m diffjax.inception convert pt_inception-2015-12-05-6726825d.pth out.npz")
    sd = read_state_dict(argv[1])
    load_weights(abstract_network(), sd)  # checks names and shapes before writing
    np.savez(argv[2], **{k: v for k, v in sd.items() if _target(k) is not None})
    print(f"wrote {argv[2]} ({sum(v.size for k, v in sd.items() if _target(k) is not None)} numbers)")


if __name__ == "__main__":
    _main(sys.argv[1:])
