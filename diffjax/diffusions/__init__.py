"""Forward diffusions: each a frozen PyTree of hyperparameters with closed-form kernels."""

from .base import LinearDiffusion, ScalarDiffusion
from .blur import Blur
from .cld import CLD, PhaseSpace
from .custom import CustomDCT, CustomDiagonal, CustomPhaseSpace, CustomScalar, custom
from .discrete import DiscreteVP
from .edm import EDM
from .fdm import FDM
from .flow import Flow
from .ve import VE
from .vp import VP

_REGISTRY = {
    "vp": VP,
    "subvp": lambda **kw: VP(sub_vp=True, **kw),
    "ve": VE,
    "edm": EDM,
    "cld": CLD,
    "blur": Blur,
    "fdm_vp": lambda **kw: FDM(base="vp", **kw),
    "fdm_ve": lambda **kw: FDM(base="ve", **kw),
    "fdm_edm": lambda **kw: FDM(base="edm", **kw),
    "flow": Flow,
    "discrete_vp": DiscreteVP.from_schedule,
}


def register(name: str, factory) -> None:
    """Make ``factory(**kwargs)`` (usually the diffusion class) available as ``name`` to :func:`get` and to the
    training configs: with it, a new diffusion is one file plus this one line. A factory with
    ``needs_data_shape = True`` gets the data shape as ``shape=`` from the training scripts (like :class:`Blur`)."""
    if not isinstance(name, str) or not name or not callable(factory):
        raise ValueError(f"register(name, factory) needs a non-empty name and a callable; got {name!r}, {factory!r}")
    _REGISTRY[name.lower()] = factory


def factory(name: str):
    """The factory registered as ``name``."""
    if not isinstance(name, str) or name.lower() not in _REGISTRY:
        raise ValueError(f"unknown diffusion {name!r}; accepted: {available()}")
    return _REGISTRY[name.lower()]


def available() -> list[str]:
    """Names accepted by :func:`get`."""
    return sorted(_REGISTRY)


def get(name: str, **kwargs) -> LinearDiffusion:
    """Build a diffusion from its name (see :func:`available`)."""
    return factory(name)(**kwargs)


__all__ = [
    "LinearDiffusion",
    "ScalarDiffusion",
    "PhaseSpace",
    "custom",
    "CustomScalar",
    "CustomDiagonal",
    "CustomDCT",
    "CustomPhaseSpace",
    "VP",
    "VE",
    "EDM",
    "CLD",
    "DiscreteVP",
    "Blur",
    "FDM",
    "Flow",
    "available",
    "get",
    "register",
    "factory",
]
