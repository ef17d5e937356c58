"""diffjax: fast diffusion models in JAX.

Forward diffusions as pure functions, compiled samplers under one API, and an exact-score test bed::

    import jax, diffjax as dj
    sde = dj.VP()
    data = dj.testbed.ring()
    x = dj.sample(jax.random.key(0), sde, data.score_fn(sde), solver="dpmpp_2m", nfe=10, shape=(1000, 2))
"""
from . import data, diffusions, interop, metrics, models, solvers, testbed, training
from .diffusions import CLD, EDM, FDM, VE, VP, Blur, Flow, LinearDiffusion, ScalarDiffusion
from .solvers import sample, sample_chunked

__version__ = "0.1.0"

__all__ = ["diffusions", "solvers", "models", "testbed", "metrics", "interop", "VP", "VE", "EDM", "CLD", "Blur", "FDM", "Flow", "LinearDiffusion",
           "ScalarDiffusion", "sample", "sample_chunked"]
