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


def load_torch_state(
    net: nnx.Module,
    state: dict[str, np.ndarray],
    rename: Callable[[str], str | None],
    where: str,
    ignore_missing: Callable[[str], bool] = lambda path: False,
) -> nnx.Module:
    """Copy a PyTorch-named ``state`` into ``net``. ``rename(module_path)`` gives the NNX module path of a torch
    module (None: not used by the port, skipped); layouts follow the target (module docstring). Errors as
    :func:`assign`, plus a name with no place in the network."""
    targets = flat_variables(nnx.state(net))
    arrays: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        ours = rename(module)
        if ours is None:
            continue
        path = _leaf_for(ours, leaf, targets)
        if path not in targets:
            raise ValueError(
                f"{where}: parameter {key!r} has no place in the network (looked for {path!r}); "
                "is the checkpoint of another architecture or config?"
            )
        if path in arrays:
            raise ValueError(f"{where}: parameters {sources[path]!r} and {key!r} both map to {path!r}")
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            arr = _layout(arr.astype(np.float32), path, targets[path].get_value().shape)
        arrays[path], sources[path] = arr, key
    return assign(net, arrays, where, ignore_missing, sources)


def assign(
    net: nnx.Module,
    arrays: dict[str, np.ndarray],
    where: str,
    ignore_missing: Callable[[str], bool] = lambda path: False,
    sources: dict | None = None,
) -> nnx.Module:
    """Set the network variables at the dotted paths of ``arrays`` (diffjax layout). Everything is checked before
    anything is written — every path exists, shapes match, values are finite floats, no variable is left without
    a value (unless ``ignore_missing(path)``) — so a failed load leaves the network as it was."""
    net_state = nnx.state(net)
    targets = flat_variables(net_state)
    name = lambda path: repr((sources or {}).get(path, path))
    for path, arr in arrays.items():
        if path not in targets:
            raise ValueError(f"{where}: {name(path)} has no place in the network; is the checkpoint of another config?")
        arr = np.asarray(arr)
        if arr.dtype.kind != "f":
            raise ValueError(f"{where}: parameter {name(path)} has dtype {arr.dtype}, expected floating point")
        expected = tuple(targets[path].get_value().shape)
        if arr.shape != expected:
            raise ValueError(
                f"{where}: parameter {name(path)} has shape {arr.shape} (in diffjax's layout); the "
                f"network expects {expected} at {path!r}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{where}: parameter {name(path)} contains non-finite values")
    missing = sorted(p for p in targets if p not in arrays and not ignore_missing(p))
    if missing:
        raise ValueError(
            f"{where}: {len(missing)} network parameter(s) have no entry in the checkpoint, e.g. "
            f"{missing[:4]}; is the checkpoint truncated or of another config?"
        )
    for path, arr in arrays.items():
        targets[path].set_value(jnp.asarray(np.asarray(arr, np.float32)))
    nnx.update(net, net_state)
    return net


def abstract(build: Callable[[], nnx.Module]) -> nnx.Module:
    """The network ``build()`` makes, with shape-only variables (no initialization cost): fill it with
    :func:`load_torch_state`."""
    return nnx.eval_shape(build)
