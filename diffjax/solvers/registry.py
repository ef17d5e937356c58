"""Solver names accepted as strings by ``dj.sample``.

Naming scheme: ``<family>[_<order>][_<variant>]``. The family is the method (``ddim``, ``dpmpp``, ``unipc``,
``ipndm``, ``gddim``, ``scire``, ``edm_heun`` for EDM's Heun in σ, ``ode_euler``/``ode_heun`` for plain Euler/Heun
on the probability-flow ODE in the diffusion's time, ``euler_maruyama``, ``pc``); the number is the order the method
is published under (DPM-Solver++(2M) → ``dpmpp_2m``, UniPC-p → ``unipc_p``, gDDIM with a degree-q polynomial,
order q + 1 → ``gddim_{q+1}``, SciRE-Solver-3 → ``scire_3``); variants: ``_sde`` (stochastic), ``_ref`` (a public
code's coefficients), ``_v`` (variable step), ``_2m`` (multistep), ``_v2``/``_phi1`` (SciRE's versions). A bare
family name is its default member (``unipc`` = ``unipc_3``). The convergence order each one reaches is
``solver.convergence_order``, checked against a measurement for every name by the tests.

Renamed in this release (the old names still work, with a ``DeprecationWarning``): ``heun`` → ``edm_heun``,
``heun_sde`` → ``edm_heun_sde``, ``gddim_2`` → ``gddim_3``.
"""

from __future__ import annotations

import warnings
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
    "edm_heun": EDMHeun,
    "edm_heun_sde": lambda: EDMHeun(s_churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003),
    "ddim": DDIM,
    "ddpm": lambda: DDIM(eta=1.0),
    "dpmpp_2m": lambda: DPMSolverPP(order=2),
    "dpmpp_3m": lambda: DPMSolverPP(order=3),
    "dpmpp_3m_ref": lambda: DPMSolverPP(order=3, variant="reference"),
    "unipc_3": lambda: UniPC(order=3),
    "unipc_2": lambda: UniPC(order=2),
    "ipndm": IPNDM,
    "ipndm_v": lambda: IPNDM(variant="variable"),
    "gddim": GDDIM,
    "gddim_3": lambda: GDDIM(order=2),
    "gddim_sde": lambda: GDDIM(lam=1.0),
    "scire": SciRE,
    "scire_v2": lambda: SciRE(version="v2"),
    "scire_3": lambda: SciRE(order=3),
    "scire_phi1": lambda: SciRE(phi="one", intermediate="taylor"),
    "scire_2m": lambda: SciRE(method="multistep"),
}


ALIASES = {"unipc": "unipc_3"}  # family defaults
DEPRECATED = {"heun": "edm_heun", "heun_sde": "edm_heun_sde", "gddim_2": "gddim_3"}  # until the next release


def available() -> list[str]:
    """Solver names accepted as strings (canonical names; family defaults such as ``unipc`` work too)."""
    return sorted(_FACTORIES)


def known(name: str) -> bool:
    """Whether ``name`` is a solver name (canonical, family default or deprecated alias)."""
    return name in _FACTORIES or name in ALIASES or name in DEPRECATED


def canonical(name: str) -> str:
    """The registry name behind an alias (a deprecated name warns)."""
    if name in DEPRECATED:
        warnings.warn(f"solver name {name!r} is deprecated; use {DEPRECATED[name]!r}", DeprecationWarning, stacklevel=3)
        return DEPRECATED[name]
    return ALIASES.get(name, name)


def get(solver: Any) -> Solver:
    """A solver instance from a name or an instance."""
    if isinstance(solver, Solver):
        return solver
    if isinstance(solver, str):
        name = canonical(solver)
        if name not in _FACTORIES:
            raise ValueError(f"unknown solver {solver!r}; accepted: {available()}")
        return _FACTORIES[name]()
    raise TypeError(f"solver must be a name or a diffjax solver instance, got {type(solver).__name__}")
