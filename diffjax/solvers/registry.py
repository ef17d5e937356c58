"""Solver names accepted as strings by ``dj.sample``."""
from __future__ import annotations

from typing import Any, Callable

from .base import Solver
from .ddim import DDIM
from .gddim import GDDIM
from .ipndm import IPNDM
from .multistep import DPMSolverPP, UniPC
from .ode import EDMHeun, ODEEuler, ODEHeun
from .scire import SciRE
from .sde import EulerMaruyama, PredictorCorrector

_FACTORIES: dict[str, Callable[[], Solver]] = {
    "euler_maruyama": EulerMaruyama,
    "pc": PredictorCorrector,
    "ode_euler": ODEEuler,
    "ode_heun": ODEHeun,
    "heun": EDMHeun,
    "heun_sde": lambda: EDMHeun(s_churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003),
    "ddim": DDIM,
    "ddpm": lambda: DDIM(eta=1.0),
    "dpmpp_2m": lambda: DPMSolverPP(order=2),
    "dpmpp_3m": lambda: DPMSolverPP(order=3),
    "dpmpp_3m_ref": lambda: DPMSolverPP(order=3, variant="reference"),
    "unipc": lambda: UniPC(order=3),
    "unipc_2": lambda: UniPC(order=2),
    "ipndm": IPNDM,
    "ipndm_v": lambda: IPNDM(variant="variable"),
    "gddim": GDDIM,
    "gddim_2": lambda: GDDIM(order=2),
    "gddim_sde": lambda: GDDIM(lam=1.0),
    "scire": SciRE,
    "scire_v2": lambda: SciRE(version="v2"),
    "scire_3": lambda: SciRE(order=3),
    "scire_phi1": lambda: SciRE(phi="one", intermediate="taylor"),
    "scire_2m": lambda: SciRE(method="multistep"),
}


def available() -> list[str]:
    """Solver names accepted as strings."""
    return sorted(_FACTORIES)


def get(solver: Any) -> Solver:
    """A solver instance from a name or an instance."""
    if isinstance(solver, Solver):
        return solver
    if isinstance(solver, str):
        if solver not in _FACTORIES:
            raise ValueError(f"unknown solver {solver!r}; accepted: {available()}")
        return _FACTORIES[solver]()
    raise TypeError(f"solver must be a name or a diffjax solver instance, got {type(solver).__name__}")
