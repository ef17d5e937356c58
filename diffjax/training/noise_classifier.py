"""Training DLG's noise-level classifier: cross-entropy on noised data with a uniform level."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ..diffusions.base import LinearDiffusion


def noise_level_loss(
    classifier: Callable, key: jax.Array, sde: LinearDiffusion, times: Any, x0: jax.Array
) -> jax.Array:
    """``E_{j ~ U{0..K−1}, x ~ p_{t_j}(· | x_0)} [−log softmax(c(x))_j]`` for a batch of clean data ``x0``.

    Its minimiser is the Bayes posterior ``π(j | x) ∝ p_{t_j}(x)`` of the noise-level problem.
    """
    times = jnp.asarray(times, x0.dtype)
    k_level, k_noise = jax.random.split(key)
    j = jax.random.randint(k_level, (x0.shape[0],), 0, times.shape[0])
    xt, _ = sde.perturb(k_noise, x0, times[j])
    logits = classifier(xt)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits, -1), j[:, None], axis=-1))


def train_noise_classifier(
    key: jax.Array,
    classifier: nnx.Module,
    sde: LinearDiffusion,
    times: Any,
    data: Any,
    steps: int = 1000,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
) -> list[float]:
    """Adam on :func:`noise_level_loss` (DMCMC: lr 1e-3, batch 100). ``data`` is an array ``(N, *shape)`` drawn
    from uniformly, or a sampler ``(key, n) -> (n, *shape)``. Updates ``classifier`` in place; returns the losses."""
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    times = np.asarray(times, np.float64)
    if callable(data):
        draw = data
    else:
        arr = jnp.asarray(data)
        if arr.ndim < 2 or arr.shape[0] < 1 or not bool(jnp.all(jnp.isfinite(arr))):
            raise ValueError("data must be a finite array (N, *shape) with N >= 1, or a sampler (key, n) -> batch")
        draw = lambda k, n: arr[jax.random.randint(k, (n,), 0, arr.shape[0])]
    opt = nnx.Optimizer(classifier, optax.adam(learning_rate), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, opt, key):
        k_data, k_loss = jax.random.split(key)
        x0 = draw(k_data, batch_size)
        loss, grads = nnx.value_and_grad(lambda m: noise_level_loss(m, k_loss, sde, times, x0))(model)
        opt.update(model, grads)
        return loss

    losses = [float(train_step(classifier, opt, k)) for k in jax.random.split(key, steps)]
    if not np.isfinite(losses[-1]):
        raise FloatingPointError("the noise-level classifier's loss became non-finite; lower the learning rate")
    return losses
