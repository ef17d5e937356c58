"""The pure pieces of training, in the Flax-examples shape: the optimizer, the EMA schedule, ``train_step`` and
``eval_step``. Each is a function of its arguments only (the trainer jit-compiles them with its configuration)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from .losses import LossConfig, diffusion_loss


def make_optimizer(cfg) -> optax.GradientTransformation:
    """Adam/AdamW with linear learning-rate warm-up and global-norm gradient clipping, as ``cfg`` says."""
    # linear ramp lr·(k+1)/W over the first W steps (the first step already moves the parameters)
    sched = (
        optax.linear_schedule(cfg.lr / max(cfg.warmup_steps, 1), cfg.lr, max(cfg.warmup_steps - 1, 1))
        if cfg.warmup_steps
        else cfg.lr
    )
    if cfg.optimizer == "adamw":
        opt = optax.adamw(sched, cfg.b1, cfg.b2, weight_decay=cfg.weight_decay)
    else:
        opt = optax.adam(sched, cfg.b1, cfg.b2)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt) if cfg.grad_clip else opt


def ema_decay(cfg, step):
    """The EMA decay of optimizer step ``step`` (0-based): ``0.5^(1/half_life)`` in steps with a short warm-up,
    or, with ``ema_half_life_images``, ``0.5^(B/h)`` with ``h = min(half-life, ema_rampup · images seen)``
    (EDM's schedule)."""
    n = jnp.asarray(step, jnp.float32)
    if cfg.ema_half_life_images > 0:
        h = jnp.asarray(cfg.ema_half_life_images, jnp.float32)
        if cfg.ema_rampup > 0:
            h = jnp.minimum(h, cfg.ema_rampup * (n + 1) * cfg.batch_size)
        return 0.5 ** (cfg.batch_size / jnp.maximum(h, 1e-8))
    decay = 0.5 ** (1.0 / cfg.ema_half_life) if cfg.ema_half_life > 0 else 0.0
    return jnp.minimum(decay, (1.0 + n) / (10.0 + n))  # forget the initialization quickly


def train_step(
    state: dict, x0, labels, *, sde, apply_net: Callable, tx: optax.GradientTransformation, cfg, loss_cfg: LossConfig
) -> tuple[dict, dict]:
    """One optimizer step on the state ``{params, ema, opt, step}``: the loss's noise and the dropout key come
    from ``fold_in(seed, step)`` (so a resumed run repeats the same steps); returns the new state and
    ``{loss, grad_norm}``. ``apply_net(params, dropout_key)`` is the network as a callable."""
    key = jax.random.fold_in(jax.random.key(cfg.seed), state["step"])

    def loss_fn(params):
        k_loss, k_drop = jax.random.split(key)
        images = state["step"].astype(jnp.float32) * cfg.batch_size
        return diffusion_loss(sde, apply_net(params, k_drop), k_loss, x0, labels, images, loss_cfg)

    loss, grads = jax.value_and_grad(loss_fn)(state["params"])
    updates, opt = tx.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    decay = ema_decay(cfg, state["step"])
    ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state["ema"], params)
    return {"params": params, "ema": ema, "opt": opt, "step": state["step"] + 1}, {
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
    }


def eval_step(params: Any, x0, labels, key, *, sde, apply_net: Callable, loss_cfg: LossConfig):
    """The loss of ``params`` on a batch without dropout and without FDM's warm-up clamp."""
    return diffusion_loss(sde, apply_net(params, None), key, x0, labels, jnp.inf, loss_cfg)
