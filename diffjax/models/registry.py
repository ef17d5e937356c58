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

from . import adm, diffusers_unet, mlp, unet


def _diffusers(data_shape, options: dict, *, num_classes=0, in_mult=1, out_mult=1, dtype=None, rngs=None):
    """diffusers' ``UNet2DModel`` from its config fields (``options``; image size and channels from the data)."""
    h, w, c = data_shape
    cfg = {k: v for k, v in options.items() if k in diffusers_unet.DEFAULTS}
    cfg.update(
        sample_size=[h, w], in_channels=c * in_mult, out_channels=c * out_mult, num_class_embeds=num_classes or None
    )
    return diffusers_unet.DiffusersUNet2D(cfg, rngs=rngs)


NETWORKS: dict[str, Callable] = {
    "mlp": mlp.build,
    "unet": unet.build,  # DDPM++ / NCSN++ (EDM's SongUNet)
    "adm": adm.build,  # ADM (EDM's DhariwalUNet)
    "diffusers_unet2d": _diffusers,
}


def register(name: str, build: Callable) -> None:
    """Make ``build`` available as the network ``name``."""
    if not isinstance(name, str) or not name or not callable(build):
        raise ValueError(
            f"register(name, build) needs a non-empty name and a callable builder; got {name!r}, {build!r}"
        )
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
