"""A solver with a fitted discretization: a base solver, its time grid and per-step coefficient corrections.

``dj.solvers.learn`` (``learn.py``) and ``dj.solvers.optimized_grid`` (``grid_search.py``) return a
:class:`Learned`; ``dj.sample(key, sde, score, solver=learned, nfe=learned.nfe_budget, ...)`` runs it like any
other solver: the base solver's step on the stored grid, with its tables ``T_k`` replaced by ``T_k + Δ_k`` for the
learned corrections ``Δ`` (zero: the base solver exactly; a multistep solver's weight table may be widened to
weight every earlier prediction, :func:`corrected_tables`) and, optionally, the network evaluated at decoupled times
``t'_i`` instead of the grid times ``t_i`` (LD3's decoupled evaluation times; the step's coefficients and the
conversion of the network's output stay those of ``t_i``). A learned solver belongs to one diffusion and one
budget; using it with another diffusion or NFE raises. ``save(path)`` / :func:`load` round-trip it through JSON
(exact float representations, so the samples are bit-identical).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np

from ..diffusions.base import LinearDiffusion
from ..files import write_atomic
from .base import Solver, Wrapper, xp_of

FORMAT = "diffjax.learned_solver"
VERSION = 4  # 2: solver fields named for what they are (UniPC.predictor_order, IPNDM.history, GDDIM.degree, SciRE)
#             3: decoupled evaluation times ("eval_times"; absent: the grid's own times)
#             4: a multistep weight correction may be wider than the solver's table (full-history corrections)


def _numbers(v: Any, what: str) -> np.ndarray:
    """``v`` as a finite float64 array; ValueError naming ``what`` for ragged, non-numeric or non-finite values."""
    try:
        arr = np.asarray(v, np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{what} must be a rectangular array of numbers (ragged or non-numeric values found)"
        ) from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains non-finite values")
    return arr


def _nested(a: np.ndarray) -> Any:
    return tuple(_nested(r) for r in a) if a.ndim else float(a)


def diffusion_spec(sde: LinearDiffusion) -> tuple:
    """``(class name, ((field, value), …))``: what identifies a diffusion's kernels (its hyperparameters)."""
    if not dataclasses.is_dataclass(sde):
        raise ValueError(f"{sde.name} is not a dataclass diffusion; learned solvers record the diffusion's fields")
    fields = []
    for f in dataclasses.fields(sde):
        v = getattr(sde, f.name)
        if isinstance(v, LinearDiffusion):
            v = diffusion_spec(v)  # a diffusion built on another (FDM's base)
        elif isinstance(v, (tuple, list)) and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v):
            v = tuple(float(e) for e in v)  # a table of numbers (DiscreteVP's ᾱ_i)
        elif not isinstance(v, (bool, int, float, str, type(None))):
            raise ValueError(
                f"cannot record {sde.name}.{f.name} = {_short(v)} (a learned solver stores plain "
                "hyperparameters; custom diffusions built from functions are not supported)"
            )
        fields.append((f.name, v))
    return (type(sde).__name__, tuple(fields))


def _frozen(cls_name: str, fields: dict) -> tuple:
    """A diffusion spec read back from JSON: lists become tuples, nested specs (``[class, [[k, v], …]]``) too."""

    def freeze(v):
        return tuple(freeze(e) for e in v) if isinstance(v, list) else v

    return (cls_name, tuple((k, freeze(v)) for k, v in fields.items()))


def _short(v) -> str:
    """``repr(v)``, long sequences abbreviated."""
    if isinstance(v, (tuple, list)) and len(v) > 6:
        return f"({len(v)} values: {v[0]!r}, {v[1]!r}, …, {v[-1]!r})"
    text = repr(v)
    return text if len(text) <= 200 else text[:200] + "…"


def _spec_str(spec: tuple) -> str:
    return f"{spec[0]}(" + ", ".join(f"{k}={_short(v)}" for k, v in spec[1]) + ")"


def corrected_tables(solver: Solver, tables: dict, corrections: dict) -> dict:
    """``tables + corrections`` (numpy or traced). A correction of one of ``solver.history_tables`` may be wider than
    its table (it weights earlier evaluations too): every history table and correction is then widened to the
    widest with zero columns, which the base weights do not use, so zero corrections give the base solver."""
    if not corrections:
        return tables
    out = dict(tables)
    hist = [k for k in solver.history_tables if k in out]
    widths = [np.shape(corrections[k])[1] for k in hist if k in corrections] + [np.shape(out[k])[1] for k in hist]
    width = max(widths, default=0)

    def widen(a):
        short = width - np.shape(a)[1]
        if short <= 0:
            return a
        xp = xp_of(a)
        return xp.concatenate([a, xp.zeros((np.shape(a)[0], short), a.dtype)], axis=1)

    for k in hist:
        out[k] = widen(out[k])
    for k, v in corrections.items():
        out[k] = out[k] + (widen(v) if k in hist else v)
    return out


def shifted_model(model: Any, times: Any, eval_times: Any) -> Any:
    """``model`` whose network is evaluated at ``φ(t)`` for the piecewise-linear time map with ``φ(t_i) = t'_i``
    (``times`` decreasing): the network input time moves, the conversion of its output to other predictions
    stays at ``t``. Traceable in ``eval_times`` (``dj.solvers.learn`` differentiates through it)."""
    xs = jnp.asarray(times)[::-1]
    fs = jnp.asarray(eval_times)[::-1]

    def fn(y, t):
        t = jnp.asarray(t)
        return model.fn(y, jnp.interp(t, xs.astype(t.dtype), fs.astype(t.dtype)))

    return dataclasses.replace(model, fn=fn)


@dataclasses.dataclass(frozen=True)
class Learned(Wrapper):
    """``base`` on the grid ``times`` (``t_0 > … > t_M``) with additive table corrections ``corrections``
    (``((table name, values), …)``, values shaped like the base solver's table), fitted for ``diffusion``
    (see :func:`diffusion_spec`) and ``nfe_budget`` evaluations. ``eval_times`` (empty: ``times``): the times
    ``t'_i`` at which the network is evaluated when a step asks for it at ``t_i`` (:func:`shifted_model`).
    ``info``: how it was fitted and its held-out errors (not part of equality). Everything else is the base
    solver's (:class:`.base.Wrapper`)."""

    name: ClassVar[str] = "learned"
    traceable: ClassVar[bool] = False  # its grid is data, not a function of a traced grid
    convergence_order: ClassVar[None] = None  # a fixed grid: no step-size refinement
    times: tuple = ()
    corrections: tuple = ()
    diffusion: tuple = ()
    nfe_budget: int = 0
    eval_times: tuple = ()
    info: dict | None = dataclasses.field(default=None, compare=False, hash=False)

    def __post_init__(self):
        if not isinstance(self.base, Solver) or isinstance(self.base, Learned):
            raise ValueError(f"a learned solver needs a plain diffjax solver as its base, got {self.base!r}")
        ts = np.asarray(self.times, np.float64)
        if ts.ndim != 1 or len(ts) < 2 or not np.all(np.isfinite(ts)) or not np.all(np.diff(ts) < 0):
            raise ValueError(f"learned grid must be a strictly decreasing finite 1-D grid, got {self.times}")
        try:
            fits = self.base.num_steps(self.nfe_budget) == len(ts) - 1
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"a grid of {len(ts) - 1} steps does not spend the recorded nfe={self.nfe_budget} "
                f"with {self.base.name!r}"
            )
        if self.eval_times:
            te = np.asarray(self.eval_times, np.float64)
            if te.shape != ts.shape or not np.all(np.isfinite(te)) or not np.all(te > 0) or not np.all(np.diff(te) < 0):
                raise ValueError(
                    f"eval_times must be {len(ts)} finite, positive, strictly decreasing times (one per grid time), "
                    f"got {self.eval_times}"
                )
        for k, _ in self.corrections:
            if k not in self.base.learnable:
                raise ValueError(f"{self.base.name!r} has no learnable table {k!r} (learnable: {self.base.learnable})")

    # ---- what differs from the base solver: its own grid, budget, diffusion and corrected tables ----------------
    def num_steps(self, nfe):
        if nfe != self.nfe_budget:
            raise ValueError(
                f"this learned {self.base.name!r} solver was fitted for nfe={self.nfe_budget}; "
                f"got nfe={nfe} (learn one for this budget with dj.solvers.learn)"
            )
        return len(self.times) - 1

    def grid_kind(self, sde=None):
        return "learned"

    def build_grid(self, sde, nfe, kind, t_start=None):
        if kind != "learned" or t_start is not None:
            raise ValueError("a learned solver runs on its own grid; do not pass grid= or a start time")
        self.num_steps(nfe)
        return np.asarray(self.times, np.float64)

    def check(self, sde):
        self.base.check(sde)
        spec = diffusion_spec(sde)
        if self.diffusion and spec != tuple(self.diffusion):
            raise ValueError(f"this solver was learned for {_spec_str(self.diffusion)}, not for {_spec_str(spec)}")
        if self.eval_times and max(self.eval_times) > sde.T * (1 + 1e-9):
            raise ValueError(f"eval_times reach beyond T = {sde.T}: {self.eval_times}")

    def _ctx(self, ctx):
        return ctx._replace(model=shifted_model(ctx.model, self.times, self.eval_times)) if self.eval_times else ctx

    def init(self, ctx, y, coefs):
        return self.base.init(self._ctx(ctx), y, coefs)

    def step(self, ctx, state, c):
        return self.base.step(self._ctx(ctx), state, c)

    def output(self, ctx, state, coefs):
        return self.base.output(self._ctx(ctx), state, coefs)

    def coefficients(self, sde, ts, nfe):
        tables = self.base.coefficients(sde, ts, nfe)
        if not self.corrections:
            return tables
        if ts.shape != (len(self.times),) or not np.array_equal(np.asarray(ts), np.asarray(self.times)):
            raise ValueError("learned coefficient corrections belong to the learned grid; do not pass another grid")
        m = len(self.times) - 1
        for k, v in self.corrections:
            want, got = np.shape(tables[k]), np.shape(v)
            history = k in self.base.history_tables  # may weight every earlier prediction: up to max(M, width)
            wide = max(m, want[1]) if history else 0
            widened = history and len(got) == 2 and got[0] == want[0] and got[1] <= wide
            if got != want and not widened:
                raise ValueError(
                    f"the learned correction of table {k!r} has shape {got}; {self.base.name!r} at "
                    f"nfe={self.nfe_budget} has a table of shape {want}"
                    + (f" (or up to {wide} history columns)" if history else "")
                    + " (a hand-edited or foreign file?)"
                )
        return corrected_tables(self.base, tables, {k: np.asarray(v, np.float64) for k, v in self.corrections})

    # ---- export ----------------------------------------------------------------------------------
    def grid_as(self, sde: LinearDiffusion, form: str = "sigmas", ignore_corrections: bool = False) -> np.ndarray:
        """The fitted grid for other samplers (float64, ``M + 1`` values, decreasing):

        * ``"sigmas"``: the noise levels ``ρ_i = σ(t_i)/α(t_i)`` (EDM's σ of ``x/α``) — the list that k-diffusion's
          samplers and diffusers' ``scheduler.set_timesteps(sigmas=...)`` take. It ends at ``ρ(t_M) > 0`` as the
          learned solver does; append a 0 for a final step to the denoised output (one more evaluation).
          :func:`dj.solvers.grid_from_sigmas` turns it back into this grid.
        * ``"t"``: the diffusion's own times.

        Only the grid transfers: table corrections and decoupled evaluation times belong to this solver, so a
        solver fitted with them raises unless ``ignore_corrections`` (fit ``what="grid"`` for a schedule meant for
        other samplers)."""
        self.check(sde)
        if (self.corrections or self.eval_times) and not ignore_corrections:
            extra = "corrects its coefficient tables" if self.corrections else "decouples its evaluation times"
            raise ValueError(
                f"this learned solver also {extra}, which other samplers cannot use; fit what='grid' for a "
                "schedule that transfers, or pass ignore_corrections=True for the grid alone"
            )
        ts = np.asarray(self.times, np.float64)
        if form == "t":
            return ts.copy()
        if form == "sigmas":
            from .schedules import on_grid

            return on_grid(sde.rho, ts)
        raise ValueError(f"unknown grid form {form!r}; accepted: 'sigmas', 't'")

    # ---- persistence ---------------------------------------------------------------------------
    def to_json(self) -> dict:
        """A JSON-ready dict: base solver (class and fields), diffusion, NFE, grid, corrections, info."""
        base_fields = {f.name: getattr(self.base, f.name) for f in dataclasses.fields(self.base)}
        return {
            "format": FORMAT,
            "version": VERSION,
            "base": {"class": type(self.base).__name__, "fields": base_fields},
            "diffusion": {"class": self.diffusion[0], "fields": dict(self.diffusion[1])} if self.diffusion else None,
            "nfe": self.nfe_budget,
            "grid": [float(t) for t in self.times],
            "corrections": {k: np.asarray(v).tolist() for k, v in self.corrections},
            **({"eval_times": [float(t) for t in self.eval_times]} if self.eval_times else {}),
            "info": self.info or {},
        }

    def save(self, path: str) -> str:
        """Write the solver as JSON to ``path`` (atomically: a temporary file, then a rename). Returns ``path``."""
        write_atomic(path, json.dumps(self.to_json(), indent=1, default=_json_default))
        return path


def base_solver(sde, solver, what: str) -> Solver:
    """The plain solver behind ``solver`` (a name, an instance or a :class:`Learned`) for fitting a
    discretization on ``sde``; ValueError unless ``sde`` is a scalar diffusion (``what`` names the caller)."""
    from ..diffusions.base import ScalarDiffusion
    from . import registry

    if not isinstance(sde, ScalarDiffusion):
        raise ValueError(f"{what} needs a scalar diffusion (VP/VE/EDM/FDM), got {sde.name}")
    base = registry.get(solver)
    return base.base if isinstance(base, Learned) else base


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def _solver_classes() -> dict[str, type]:
    from . import registry

    classes = {}
    for name in registry.available():
        cls = type(registry.get(name))
        classes[cls.__name__] = cls
    return classes


def _fields_of_version_1(cls_name: str, fields: dict) -> tuple[str, dict]:
    """A version-1 base solver (fields named ``order``/``method``) in today's names."""
    renamed = {"UniPC": "predictor_order", "IPNDM": "history", "GDDIM": "degree"}
    if cls_name in renamed and "order" in fields:
        fields[renamed[cls_name]] = fields.pop("order")
    if cls_name == "SciRE":
        method = fields.pop("method", "singlestep_agile")
        if method == "multistep":
            fields.pop("intermediate", None)
            history = fields.pop("order", 2)
            return "SciREMultistep", {**fields, "history": history}
        fields["stages"] = fields.pop("order", 2)
        fields["allocation"] = {"singlestep_agile": "agile", "singlestep_fixed": "fixed"}[method]
    return cls_name, fields


def from_json(obj: dict, where: str = "the learned solver") -> Learned:
    """Rebuild a :class:`Learned` from :meth:`Learned.to_json` output (raises ValueError naming what is wrong)."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{where} is not a diffjax learned solver (missing format {FORMAT!r})")
    if obj.get("version") not in range(1, VERSION + 1):
        raise ValueError(
            f"{where} has format version {obj.get('version')!r}; this diffjax reads versions 1 to {VERSION}"
        )
    try:
        cls_name, fields = obj["base"]["class"], dict(obj["base"]["fields"])
        if obj["version"] == 1:
            cls_name, fields = _fields_of_version_1(cls_name, fields)
        base = _solver_classes()[cls_name](**fields)
        diff = obj.get("diffusion")
        spec = _frozen(diff["class"], diff["fields"]) if diff else ()
        corrections = tuple(
            (k, _nested(_numbers(v, f"{where}: correction {k!r}"))) for k, v in (obj.get("corrections") or {}).items()
        )
        grid = _numbers(obj["grid"], f"{where}: grid")
        if grid.ndim != 1:
            raise ValueError(f"{where}: grid must be a list of times, got an array of shape {grid.shape}")
        return Learned(
            base=base,
            times=tuple(float(t) for t in grid),
            corrections=corrections,
            diffusion=spec,
            nfe_budget=int(obj["nfe"]),
            eval_times=tuple(float(t) for t in _numbers(obj.get("eval_times") or [], f"{where}: eval_times")),
            info=obj.get("info") or {},
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f"{where} is malformed: {type(e).__name__}: {e}") from e


def load(path: str) -> Learned:
    """Load a solver written by :meth:`Learned.save`; the diffusion it was fitted for is checked when sampling."""
    try:
        with open(path) as fh:
            obj = json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"no learned solver at {path!r}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path!r} is not valid JSON ({e}); was it written by learned.save?") from None
    return from_json(obj, repr(path))
