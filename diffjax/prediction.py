"""Predictions and their exact conversions: score, ε, x0, v, flow velocity and EDM denoisers, through the kernel.

This module needs only the diffusions (no network library): solvers and ``dj.sample`` build on it.

A *model* here is a callable ``(y, t) -> prediction`` together with what it predicts. Solvers ask a
:class:`Model` for whichever output their update needs; the conversion goes straight from the native
prediction to the requested one (never through a ``1/σ`` when it can be avoided), so it stays finite at
``t_min`` in float32:

* score ``s``;  ε̂ = −σ s;  x̂0 = (x + σ² s)/α                 (scalar diffusions)
* ε̂;           s = −ε̂/σ;  x̂0 = (x − σ ε̂)/α
* x̂0;          ε̂ = (x − α x̂0)/σ;  s = (α x̂0 − x)/σ²
* EDM denoiser ``D(x̃; σ̃)`` on ``x̃ = x/α``, ``σ̃ = σ/α``: x̂0 = D(x/α, ρ(t))
* v-prediction (Salimans & Ho 2022) ``v = α ε − σ x0``;  flow velocity ``u = α̇ x0 + σ̇ ε`` (the PF-ODE's
  ``dx/dt``; ``ε − x0`` under flow matching). Both are ``a x0 + b ε`` with known ``(a, b)``, so together with
  ``x = α x0 + σ ε`` they give, with ``Δ = α b − σ a``: ``x̂0 = (b x − σ ô)/Δ``, ``ε̂ = (α ô − a x)/Δ``
  (v: ``Δ = α² + σ²``; flow matching: ``Δ = 1``)

For diffusions with 2×2 blocks (CLD) the score and ε (with the Cholesky factor K_t) are available; x0-, v- and
velocity predictions need a scalar kernel and raise otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

from .diffusions.base import LinearDiffusion, ScalarDiffusion

KINDS = ("score", "eps", "x0", "v", "velocity")
PAIR_KINDS = ("v", "velocity")  # predictions a x0 + b ε, converted through the kernel
ALL_KINDS = KINDS + ("edm",)


@dataclasses.dataclass(frozen=True)
class Model:
    """A prediction function bound to a diffusion, with exact conversions between outputs."""

    sde: LinearDiffusion
    fn: Callable[[Any, Any], Any]
    kind: str = "score"

    def __post_init__(self):
        if self.kind not in KINDS:
            hint = " (wrap EDM denoisers with as_model(sde, fn, 'edm'))" if self.kind == "edm" else ""
            raise ValueError(f"unknown prediction kind {self.kind!r}; accepted: {list(ALL_KINDS)}{hint}")
        if not callable(self.fn):
            raise TypeError(f"the model must be callable (y, t) -> prediction, got {type(self.fn).__name__}")
        if self.kind in ("x0",) + PAIR_KINDS and not isinstance(self.sde, ScalarDiffusion):
            raise ValueError(
                f"kind={self.kind!r} needs a scalar diffusion (VP/VE/EDM/Flow); "
                f"{self.sde.name} supports 'score' and 'eps'"
            )

    def pair_coefficients(self, y, t):
        """``(a, b)`` with prediction ``= a x0 + b ε`` (:meth:`ScalarDiffusion.pair_coefficients`), shaped for ``y``."""
        a, b = self.sde.pair_coefficients(self.kind, t)
        return self.sde.bcast(a, y), self.sde.bcast(b, y)

    def _x0_eps_of(self, y, t, out):
        a, s = self._scalars(y, t)
        if self.kind == "x0":
            return out, (y - a * out) / s
        if self.kind in PAIR_KINDS:
            pa, pb = self.pair_coefficients(y, t)
            det = a * pb - s * pa
            return (pb * y - s * out) / det, (a * out - pa * y) / det
        eps = out if self.kind == "eps" else -s * out
        return (y - s * eps) / a, eps

    def x0_eps(self, y, t):
        """``(x̂0, ε̂)`` from a single evaluation (scalar diffusions)."""
        return self._x0_eps_of(y, t, self.fn(y, t))

    def _as_pair(self, kind, y, t):
        """The prediction ``kind`` = ``a x̂0 + b ε̂`` from one evaluation (scalar diffusions)."""
        if self.kind == kind:
            return self.fn(y, t)
        x0, eps = self.x0_eps(y, t)
        a, b = self.sde.pair_coefficients(kind, t)
        return self.sde.bcast(a, y) * x0 + self.sde.bcast(b, y) * eps

    def velocity(self, y, t):
        """The flow velocity ``û = α̇ x̂0 + σ̇ ε̂`` (the probability-flow ODE's ``dx/dt``; scalar diffusions)."""
        return self._as_pair("velocity", y, t)

    def pf_drift(self, y, t):
        """The probability-flow ODE's ``dy/dt``: the flow velocity for scalar diffusions (no cancellation between
        ``F y`` and the score term), ``F y − ½ G Gᵀ ∇log p_t`` otherwise."""
        if isinstance(self.sde, ScalarDiffusion):
            return self.velocity(y, t)
        return self.sde.reverse_drift(y, t, self.score(y, t), lam=0.0)

    def v(self, y, t):
        """The v-prediction ``v̂ = α ε̂ − σ x̂0`` (scalar diffusions)."""
        return self._as_pair("v", y, t)

    def _scalars(self, x, t):
        sde = self.sde
        return sde.bcast(sde.alpha(t), x), sde.bcast(sde.sigma(t), x)

    def raw(self, y, t):
        """The wrapped function's output, unconverted."""
        return self.fn(y, t)

    def score(self, y, t):
        """``∇log p_t(y)`` from any parameterization (``−ε/σ``, ``(αx̂₀ − y)/σ²``, block forms)."""
        out = self.fn(y, t)
        if self.kind == "score":
            return out
        if self.kind == "eps":
            if isinstance(self.sde, ScalarDiffusion):
                _, s = self._scalars(y, t)
                return -out / s
            return self.sde.score_from_eps(y, t, out)
        a, s = self._scalars(y, t)
        if self.kind in PAIR_KINDS:
            return -self._x0_eps_of(y, t, out)[1] / s
        return (a * out - y) / s**2

    def eps(self, y, t):
        """``ε̂ = −K_tᵀ ∇log p_t`` (``(y − αx̂₀)/σ`` for scalar diffusions)."""
        out = self.fn(y, t)
        if self.kind == "eps":
            return out
        if self.kind == "score":
            if isinstance(self.sde, ScalarDiffusion):
                _, s = self._scalars(y, t)
                return -s * out
            return self.sde.eps_from_score(y, t, out)
        if self.kind in PAIR_KINDS:
            return self._x0_eps_of(y, t, out)[1]
        a, s = self._scalars(y, t)
        return (y - a * out) / s

    def x0(self, y, t):
        """Data prediction ``E[x_0 | x_t]``."""
        out = self.fn(y, t)
        if self.kind == "x0":
            return out
        if not isinstance(self.sde, ScalarDiffusion):
            score = out if self.kind == "score" else self.sde.score_from_eps(y, t, out)
            return self.sde.data_part(self.sde.clean_from_score(y, t, score))
        if self.kind in PAIR_KINDS:
            return self._x0_eps_of(y, t, out)[0]
        a, s = self._scalars(y, t)
        if self.kind == "score":
            return (y + s**2 * out) / a
        return (y - s * out) / a

    def __call__(self, y, t):
        return self.fn(y, t)


def _unflatten_model(aux, children):
    model = object.__new__(Model)  # the fields were validated when the model was built
    object.__setattr__(model, "sde", aux[0])
    object.__setattr__(model, "kind", aux[1])
    object.__setattr__(model, "fn", children[0])
    return model


# a PyTree whose leaves are those of ``fn`` (e.g. a network's parameters): dj.sample passes them to its compiled
# sampler as arguments
jax.tree_util.register_pytree_node(Model, lambda m: ((m.fn,), (m.sde, m.kind)), _unflatten_model)


def edm_denoiser(sde: ScalarDiffusion, denoiser: Callable[[Any, Any], Any]) -> Model:
    """Wrap an EDM-style denoiser ``D(x̃; σ̃)`` (on ``x̃ = x/α``, ``σ̃ = σ/α``) as an x0-model of ``sde``."""
    if not isinstance(sde, ScalarDiffusion):
        raise ValueError(f"an EDM denoiser needs a scalar diffusion, got {sde.name}")

    def fn(y, t):
        a = sde.bcast(sde.alpha(t), y)
        return denoiser(y / a, sde.rho(t))

    return Model(sde, fn, "x0")


def as_model(sde: LinearDiffusion, model: Any, kind: str = "score") -> Model:
    """Bind a callable (or pass through a :class:`Model`) to ``sde``. ``kind='edm'`` wraps an EDM denoiser."""
    if isinstance(model, Model):
        if model.sde is not sde and model.sde != sde:
            raise ValueError(f"the model is bound to {model.sde!r}, not to {sde!r}")
        return model
    if kind == "edm":
        return edm_denoiser(sde, model)
    if kind not in KINDS:
        raise ValueError(f"unknown prediction kind {kind!r}; accepted: {list(ALL_KINDS)}")
    return Model(sde, model, kind)
