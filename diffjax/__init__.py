"""diffjax: fast diffusion models in JAX.

Forward diffusions as pure functions, compiled samplers under one API, and an exact-score test bed::

    import jax, diffjax as dj
    sde = dj.VP()
    data = dj.testbed.ring()
    x = dj.sample(jax.random.key(0), sde, data.score_fn(sde), solver="dpmpp_2m", nfe=10, shape=(1000, 2))

Importing diffjax loads only the sampling core (diffusions, predictions, solvers; jax and numpy). The other
subpackages load on first use: ``models`` and ``training`` bring in flax and optax, ``interop`` diffrax, ``data``
tensorflow-datasets when a TFDS source is built.
"""

import importlib

from . import diffusions, prediction, solvers
from .diffusions import CLD, EDM, FDM, VE, VP, Blur, Flow, LinearDiffusion, ScalarDiffusion
from .solvers import sample, sample_chunked

__version__ = "0.1.0"

_LAZY = ("data", "fid", "files", "inception", "interop", "metrics", "models", "testbed", "training")


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'diffjax' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "diffusions",
    "prediction",
    "solvers",
    "models",
    "testbed",
    "metrics",
    "interop",
    "data",
    "training",
    "fid",
    "files",
    "inception",
    "VP",
    "VE",
    "EDM",
    "CLD",
    "Blur",
    "FDM",
    "Flow",
    "LinearDiffusion",
    "ScalarDiffusion",
    "sample",
    "sample_chunked",
]
