"""Solver names accepted as strings by ``dj.sample``.

Naming scheme: ``<family>[_<order>][_<variant>]``. The family is the method (``ddim``, ``dpmpp``, ``unipc``,
``ipndm``, ``gddim``, ``scire``, ``edm_heun`` for EDM's Heun in σ, ``ode_euler``/``ode_heun`` for plain Euler/Heun
on the probability-flow ODE in the diffusion's time, ``euler_maruyama``, ``pc``); the number is the order the method
is published under (DPM-Solver++(2M) → ``dpmpp_2m``, UniPC-p → ``unipc_p``, gDDIM with a degree-q polynomial,
order q + 1 → ``gddim_{q+1}``, SciRE-Solver-3 → ``scire_3``); variants: ``_sde`` (stochastic), ``_ref`` (a public
code's coefficients), ``_v`` (variable step), ``_2m`` (multistep), ``_v2``/``_phi1`` (SciRE's versions). A bare
family name is its default member (``unipc`` = ``unipc_3``). The convergence order each one reaches is
``solver.convergence_order``, checked against a measurement for every name by the tests. :func:`register` adds a
solver of your own under its name.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

from .base import Solver
from .ddim import DDIM
from .gddim import GDDIM
from .ipndm import IPNDM
from .multistep import DPMSolverPP, UniPC
from .ode import EDMHeun, ODEEuler, ODEHeun
from .scire import SciRE, SciREMultistep
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
    "unipc_3": lambda: UniPC(predictor_order=3),
    "unipc_2": lambda: UniPC(predictor_order=2),
    "ipndm": IPNDM,
    "ipndm_v": lambda: IPNDM(variant="variable"),
    "gddim": GDDIM,
    "gddim_3": lambda: GDDIM(degree=2),
    "gddim_sde": lambda: GDDIM(lam=1.0),
    "scire": SciRE,
    "scire_v2": lambda: SciRE(version="v2"),
    "scire_3": lambda: SciRE(stages=3),
    "scire_phi1": lambda: SciRE(phi="one", intermediate="taylor"),
    "scire_2m": SciREMultistep,
}


ALIASES = {"unipc": "unipc_3"}  # family defaults


def register(name: str, factory: Callable[[], Solver], replace: bool = False) -> None:
    """Make ``factory()`` available as the solver ``name`` (to ``dj.sample(..., solver=name)``, :func:`get`, the
    scripts and learned-solver files). The solver it builds must report ``name`` as its ``name`` (that is how
    results and files refer to it); a name already taken needs ``replace=True``."""
    if not isinstance(name, str) or not name or not callable(factory):
        raise ValueError(f"register(name, factory) needs a non-empty name and a callable; got {name!r}, {factory!r}")
    if known(name) and not replace:
        raise ValueError(f"solver name {name!r} is already registered; pass replace=True to replace it")
    solver = factory()
    if not isinstance(solver, Solver):
        raise TypeError(f"factory() for {name!r} must build a diffjax Solver, got {type(solver).__name__}")
    if solver.name != name:
        raise ValueError(
            f"factory() builds a solver named {solver.name!r}, registered as {name!r}; register it under its own "
            f"name or give its class `name: ClassVar[str] = {name!r}`"
        )
    _FACTORIES[name] = factory


def unregister(name: str) -> None:
    """Remove a solver added by :func:`register` (ValueError for a name that is not registered)."""
    if name not in _FACTORIES:
        raise ValueError(f"no solver named {name!r} is registered")
    del _FACTORIES[name]


def available() -> list[str]:
    """Solver names accepted as strings (canonical names; family defaults such as ``unipc`` work too)."""
    return sorted(_FACTORIES)


def known(name: str) -> bool:
    """Whether ``name`` is a solver name (canonical or a family default)."""
    return name in _FACTORIES or name in ALIASES


def canonical(name: str) -> str:
    """The registry name behind a family default (``unipc`` → ``unipc_3``)."""
    return ALIASES.get(name, name)


def get(solver: Any) -> Solver:
    """A solver instance from a name or an instance."""
    if isinstance(solver, Solver):
        return solver
    if isinstance(solver, str):
        name = canonical(solver)
        if name not in _FACTORIES:
            close = difflib.get_close_matches(name, list(_FACTORIES) + list(ALIASES), n=3)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise ValueError(f"unknown solver {solver!r}{hint}; accepted: {available()}")
        return _FACTORIES[name]()
    raise TypeError(f"solver must be a name or a diffjax solver instance, got {type(solver).__name__}")
