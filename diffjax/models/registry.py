"""Networks by name, so that a config names its network (``model.kind``).

A network is an NNX module called as ``net(x, c_noise, labels=None, *, dropout_key=None)``: ``x`` the
(preconditioned) state with ``in_mult`` times the data's channels, ``c_noise`` the noise label ``(B,)``, ``labels``
class labels or None, ``dropout_key`` a PRNG key in training (None: deterministic). It returns ``out_mult`` times
the data's channels. ``in_mult``/``out_mult`` come from the diffusion's training recipe (CLD: 2).

Adding one: a file with the module and a builder ``build(data_shape, options, *, num_classes, in_mult, out_mult,
dtype, rngs)`` (``options``: the config's ``model`` section), and one line in ``NETWORKS`` below — or
``register(name, build)`` from your own code.
"""
from __future__ import annotations

from typing import Callable

from . import mlp, unet

NETWORKS: dict[str, Callable] = {
    "mlp": mlp.build,
    "unet": unet.build,
}


def register(name: str, build: Callable) -> None:
    """Make ``build`` available as the network ``name``."""
    if not isinstance(name, str) or not name or not callable(build):
        raise ValueError(f"register(name, build) needs a non-empty name and a callable builder; got {name!r}, {build!r}")
    NETWORKS[name] = build


def available() -> list[str]:
    """Registered network names."""
    return sorted(NETWORKS)


def build(name: str, data_shape, options: dict | None = None, **common):
    """Build the network ``name`` for data of ``data_shape`` (``common``: num_classes, in_mult, out_mult, dtype,
    rngs)."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; accepted: {available()}")
    return NETWORKS[name](tuple(data_shape), dict(options or {}), **common)
