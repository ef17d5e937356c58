"""Samplers: pure ``init``/``step`` solvers run by one ``lax.scan`` driver."""

from .base import Context, Solver, Wrapper
from .chunked import sample_chunked
from .ddim import DDIM
from .dlg import DLG, Chains, level_times
from .driver import cache_info, clear_cache, nfe_of, plan, sample
from .gddim import GDDIM, gddim_coefficients
from .grid_search import optimized_grid
from .ipndm import IPNDM
from .learn import learn
from .learned import Learned, load
from .multistep import DPMSolverPP, UniPC
from .ode import EDMHeun, ODEEuler, ODEHeun
from .pds import PDS, Preconditioner, preconditioner_from_images
from .registry import available, get, known, register, unregister
from .schedules import GRIDS, grid_from_sigmas, make_grid, on_grid, validate_grid
from .scire import SciRE, SciREMultistep
from .sde import EulerMaruyama, PredictorCorrector

__all__ = [
    "Context",
    "Solver",
    "DDIM",
    "DLG",
    "Chains",
    "level_times",
    "GDDIM",
    "IPNDM",
    "learn",
    "optimized_grid",
    "Learned",
    "load",
    "gddim_coefficients",
    "SciRE",
    "SciREMultistep",
    "PDS",
    "Preconditioner",
    "preconditioner_from_images",
    "DPMSolverPP",
    "UniPC",
    "EDMHeun",
    "ODEEuler",
    "ODEHeun",
    "EulerMaruyama",
    "PredictorCorrector",
    "sample",
    "sample_chunked",
    "cache_info",
    "clear_cache",
    "plan",
    "nfe_of",
    "available",
    "get",
    "known",
    "register",
    "unregister",
    "Wrapper",
    "GRIDS",
    "make_grid",
    "grid_from_sigmas",
    "on_grid",
    "validate_grid",
]
