"""Forward diffusions: each a frozen PyTree of hyperparameters with closed-form kernels."""
from .base import LinearDiffusion, ScalarDiffusion
from .edm import EDM
from .ve import VE
from .vp import VP

_REGISTRY = {"vp": VP, "subvp": lambda **kw: VP(sub_vp=True, **kw), "ve": VE, "edm": EDM}


def available() -> list[str]:
    """Names accepted by :func:`get`."""
    return sorted(_REGISTRY)


def get(name: str, **kwargs) -> LinearDiffusion:
    """Build a diffusion from its name (``'vp'``, ``'subvp'``, ``'ve'``, ``'edm'``)."""
    if not isinstance(name, str) or name.lower() not in _REGISTRY:
        raise ValueError(f"unknown diffusion {name!r}; accepted: {available()}")
    return _REGISTRY[name.lower()](**kwargs)


__all__ = ["LinearDiffusion", "ScalarDiffusion", "VP", "VE", "EDM", "available", "get"]
