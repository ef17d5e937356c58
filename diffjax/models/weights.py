"""Copying named weights of another framework into an NNX network: checked completely before anything is set.

PyTorch names a parameter ``<module path>.<weight|bias|…>`` and stores convolutions as ``(O, I, H, W)`` and linear
maps as ``(out, in)``; NNX names it by its attribute path with leaves ``kernel`` (``(H, W, I, O)`` / ``(in, out)``),
``bias``, ``scale`` (norms) or ``embedding``. :func:`load_torch_state` translates names through a per-format
``rename`` and layouts by the target's kind, checks every name and shape, and only then writes the arrays, so a
failed load leaves the network as it was.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx


def flat_variables(state) -> dict[str, nnx.Variable]:
    """The variables of an NNX state (parameters and fixed arrays such as Fourier frequencies) by dotted path."""
    return {".".join(str(p) for p in path): v for path, v in nnx.to_flat_state(state)}


def _leaf_for(module: str, leaf: str, targets) -> str:
    if leaf != "weight":
        return f"{module}.{leaf}" if module else leaf
    for ours in ("kernel", "scale", "embedding"):
        if f"{module}.{ours}" in targets:
            return f"{module}.{ours}"
    return f"{module}.weight"


def _layout(array: np.ndarray, target_path: str, target_shape) -> np.ndarray:
    if target_path.endswith(".kernel") and array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))  # OIHW -> HWIO
    if target_path.endswith(".kernel") and array.ndim == 2:
        return array.T
    return array


def load_torch_state(net: nnx.Module, state: dict[str, np.ndarray], rename: Callable[[str], str | None],
                     where: str, ignore_missing: Callable[[str], bool] = lambda path: False) -> nnx.Module:
    """Copy a PyTorch-named ``state`` into ``net``. ``rename(module_path)`` gives the NNX module path of a torch
    module (None: not used by the port, skipped). Raises ValueError naming ``where`` and the first bad entry:
    a name with no place in the network, a shape that differs after the layout change, a network variable no entry
    fills (unless ``ignore_missing(path)``), a non-finite value."""
    net_state = nnx.state(net)
    targets = flat_variables(net_state)
    arrays: dict[str, np.ndarray] = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        ours = rename(module)
        if ours is None:
            continue
        path = _leaf_for(ours, leaf, targets)
        if path not in targets:
            raise ValueError(f"{where}: parameter {key!r} has no place in the network (looked for {path!r}); "
                             "is the checkpoint of another architecture or config?")
        if path in arrays:
            raise ValueError(f"{where}: parameters {key!r} and another one both map to {path!r}")
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{where}: parameter {key!r} has dtype {arr.dtype}, expected floating point")
        arr = _layout(arr.astype(np.float32), path, targets[path].get_value().shape)
        expected = tuple(targets[path].get_value().shape)
        if arr.shape != expected:
            raise ValueError(f"{where}: parameter {key!r} has shape {tuple(np.asarray(value).shape)} (as {arr.shape} "
                             f"after the layout change); the network expects {expected} at {path!r}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{where}: parameter {key!r} contains non-finite values")
        arrays[path] = arr
    missing = sorted(p for p in targets if p not in arrays and not ignore_missing(p))
    if missing:
        raise ValueError(f"{where}: {len(missing)} network parameter(s) have no entry in the checkpoint, e.g. "
                         f"{missing[:4]}; is the checkpoint truncated or of another config?")
    for path, arr in arrays.items():
        targets[path].set_value(jnp.asarray(arr))
    nnx.update(net, net_state)
    return net


def abstract(build: Callable[[], nnx.Module]) -> nnx.Module:
    """The network ``build()`` makes, with shape-only variables (no initialization cost): fill it with
    :func:`load_torch_state`."""
    return nnx.eval_shape(build)
