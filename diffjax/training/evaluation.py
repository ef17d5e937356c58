"""Evaluation during training: the held-out loss on fixed batches and keys (comparable across steps), and a
sample-based score (sliced W2 of EMA samples against held-out data, with a PNG of them)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np


def heldout_loss(eval_step: Callable, params: Any, source, global_batch: Callable, batches: int) -> float:
    """Mean of ``eval_step(params, x, labels, key)`` over ``batches`` fixed batches of ``source`` (steps 10⁶ + i,
    keys 1000 + i)."""
    losses = []
    for i in range(batches):
        x, labels = global_batch(source, 10**6 + i)
        losses.append(float(eval_step(params, x, labels, jax.random.key(1000 + i))))
    return float(np.mean(losses))


def sample_score(sde, model, source, n: int, solver: str, nfe: int, seed: int, png: str | None = None) -> dict:
    """Sample ``model`` (fixed key) and score the samples by sliced W2 against ``n`` held-out examples; write a
    PNG grid to ``png``. Non-finite samples score ``inf``."""
    from ..metrics import sliced_wasserstein
    from ..plotting import save_grid
    from ..solvers.driver import sample

    ref, _ = source.batch(2 * 10**6, n)
    x = np.asarray(
        sample(jax.random.key(seed), sde, model, solver, nfe=nfe, shape=(n,) + tuple(ref.shape[1:]), check_finite=False)
    )
    if not np.all(np.isfinite(x)):
        return {"eval_sliced_w2": float("inf")}
    if png:
        save_grid(x, png)
    return {"eval_sliced_w2": float(sliced_wasserstein(x, ref, jax.random.key(0)))}
