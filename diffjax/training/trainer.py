"""The trainer: a thin loop around the pure ``train_step`` (:mod:`.step`), with evaluation (:mod:`.evaluation`),
logging and verified orbax checkpoints (:mod:`.checkpoints`).

The train state is a PyTree ``{params, ema, opt, step}``; everything else is a pure function of the step count:
the batch (``source.batch(step, …)``), the loss's noise and the dropout key (``fold_in(seed, step)``). So a run
interrupted after a checkpoint and resumed reproduces the uninterrupted run exactly (bit for bit on CPU).

Data parallelism: a 1-D mesh ``("data",)`` over all devices; the state is replicated, the batch is sharded along
its first axis and XLA inserts the gradient all-reduce. With ``distributed=True`` the run calls
``jax.distributed.initialize()`` and every process loads only its slice of each global batch.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import gc
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..diffusions.base import LinearDiffusion
from ..files import FolderLock, describe_os_error, write_atomic
from ..models.precond import Preconditioned
from ..plotting import save_grid  # noqa: F401  (its former home)
from ..prediction import Model
from .checkpoints import CheckpointError, _quiet_stderr, _signature, state_digest  # noqa: F401
from .evaluation import heldout_loss, sample_score
from .losses import LossConfig
from .step import ema_decay, eval_step, make_optimizer, train_step  # noqa: F401


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 100  # linear learning-rate ramp
    grad_clip: float = 1.0  # global-norm clipping (0: off)
    optimizer: str = "adam"  # 'adam' or 'adamw'
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    ema_half_life: float = 200.0  # in optimizer steps; EMA decay 0.5^(1/half_life)
    # > 0: the half-life in training images instead (EDM: 500 k images), decay 0.5^(batch/half_life_images)
    ema_half_life_images: float = 0.0
    ema_rampup: float = 0.0  # > 0: half-life at most ema_rampup × images seen (EDM: 0.05); else a 10-step warm-up
    log_every: int = 50
    eval_every: int = 0  # 0: only at the end
    eval_batches: int = 4
    eval_samples: int = 0  # > 0: also sample the EMA model at each evaluation (metric + PNG grid in workdir)
    eval_solver: str = "edm_heun"
    eval_nfe: int = 19
    ckpt_every: int = 500  # 0: only at the end
    keep: int = 3
    seed: int = 0
    async_checkpoint: bool = True
    distributed: bool = False
    progress: bool = True
    tensorboard: bool = False  # also write the logged rows as TensorBoard scalars to workdir/tensorboard

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if not (isinstance(self.keep, int) and self.keep >= 1):
            raise ValueError(
                f"keep must be an integer >= 1 (the number of checkpoints kept), got {self.keep!r}: "
                "keep=0 would delete every checkpoint"
            )
        if self.log_every < 1 or self.ckpt_every < 0 or self.eval_every < 0:
            raise ValueError(
                f"need log_every >= 1, ckpt_every >= 0, eval_every >= 0; got {self.log_every}, "
                f"{self.ckpt_every}, {self.eval_every}"
            )
        if not (
            self.lr > 0
            and self.ema_half_life >= 0
            and self.grad_clip >= 0
            and self.ema_half_life_images >= 0
            and self.ema_rampup >= 0
        ):
            raise ValueError(
                f"need lr > 0, ema_half_life >= 0, ema_half_life_images >= 0, ema_rampup >= 0, grad_clip >= 0; "
                f"got {self.lr}, {self.ema_half_life}, {self.ema_half_life_images}, {self.ema_rampup}, {self.grad_clip}"
            )


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped :meth:`Trainer.train` after a finished step; ``step`` was saved (when there is a
    workdir), so the same command resumes exactly."""

    def __init__(self, step: int, saved: bool):
        super().__init__(step)
        self.step, self.saved = step, saved

    def __str__(self):
        where = (
            f"checkpoint {self.step} saved; rerun the same command to resume"
            if self.saved
            else "nothing saved (no workdir)"
        )
        return f"interrupted after step {self.step}: {where}"


class Trainer:
    """Train ``net`` (an NNX module ``net(x, c_noise, labels)``) on ``data`` (a batch source) for ``sde``.

    ``workdir`` holds ``checkpoints/`` (orbax, atomic, keep-N), ``metrics.jsonl``/``metrics.csv`` (and
    ``tensorboard/`` event files with ``cfg.tensorboard``) and ``signature.json`` (the diffusion and parameter
    shapes, checked on resume).
    """

    def __init__(
        self,
        sde: LinearDiffusion,
        net: nnx.Module,
        data: Any,
        cfg: TrainConfig = TrainConfig(),
        loss_cfg: LossConfig = LossConfig(),
        workdir: str | None = None,
        eval_data: Any = None,
    ):
        if cfg.distributed and jax.process_count() == 1 and not jax.distributed.is_initialized():
            jax.distributed.initialize()
        if loss_cfg.fdm_warmup_images < 0:  # FDM's clamp ends where the official recipe's does within the lr ramp
            frac = getattr(sde, "loss_warmup_fraction", 0.0)
            loss_cfg = dataclasses.replace(loss_cfg, fdm_warmup_images=frac * cfg.warmup_steps * cfg.batch_size)
        if cfg.eval_samples > 0:  # a typo must not surface only at the first evaluation, after hours of training
            from ..solvers import registry

            registry.get(cfg.eval_solver)
        self.sde, self.data, self.cfg, self.loss_cfg = sde, data, cfg, loss_cfg
        self.eval_data, self.workdir = eval_data, workdir
        n_dev = jax.device_count()
        if cfg.batch_size % n_dev:
            raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {n_dev} devices")
        self.mesh = Mesh(np.asarray(jax.devices()), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        self.graphdef, params, self.rest = nnx.split(net, nnx.Param, ...)
        self.tx = make_optimizer(cfg)
        state = {
            "params": params,
            "ema": jax.tree.map(jnp.copy, params),
            "opt": self.tx.init(params),
            "step": jnp.zeros((), jnp.int32),
        }
        self.state = jax.device_put(state, self.replicated)
        pure = dict(sde=sde, apply_net=self.net, loss_cfg=loss_cfg)
        self._step = jax.jit(functools.partial(train_step, tx=self.tx, cfg=cfg, **pure), donate_argnums=0)
        self._eval = jax.jit(functools.partial(eval_step, **pure))
        self.manager = None
        self._tb = None
        if cfg.tensorboard:
            if not workdir:
                raise ValueError("tensorboard=True writes to workdir/tensorboard: give a workdir")
            try:
                import tensorboardX  # noqa: F401
            except ImportError as e:
                raise ImportError("tensorboard=True needs tensorboardX: pip install 'diffjax[tensorboard]'") from e
        if workdir:
            import orbax.checkpoint as ocp

            os.makedirs(workdir, exist_ok=True)
            self.manager = ocp.CheckpointManager(
                os.path.abspath(os.path.join(workdir, "checkpoints")),
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=cfg.keep, create=True, enable_async_checkpointing=cfg.async_checkpoint
                ),
            )

    # ---- pure pieces ---------------------------------------------------------------------------
    def net(self, params: Any, dropout_key: jax.Array | None = None):
        """The network with ``params``; with ``dropout_key`` a training-mode callable (every network takes a
        ``dropout_key`` keyword, :mod:`diffjax.models.registry`; the key is pure, so no RNG state lives in the
        model)."""
        m = nnx.merge(self.graphdef, params, self.rest)
        if dropout_key is None:
            return m
        return lambda x, c, labels=None: m(x, c, labels, dropout_key=dropout_key)  # the network protocol

    def ema_decay(self, step):
        """The EMA decay at optimizer step ``step`` (:func:`diffjax.training.step.ema_decay`)."""
        return ema_decay(self.cfg, step)

    # ---- data ----------------------------------------------------------------------------------
    def _global_batch(self, source, step):
        x, labels = source.batch(int(step), self.cfg.batch_size, jax.process_index(), jax.process_count())
        put = lambda a: jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(a))
        return put(x), (None if labels is None else put(labels))

    # ---- checkpoints ---------------------------------------------------------------------------
    def _check_signature(self):
        path = os.path.join(self.workdir, "signature.json")
        sig = _signature(self.sde, self.state["params"], self.graphdef)
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
            differ = [k for k in sig if k in old and old[k] != sig[k]]  # signatures of older runs lack "network"
            if differ or "sde" not in old:
                what = {
                    "sde": f"diffusion {old.get('sde')} vs {sig['sde']}",
                    "params": "parameter shapes or dtypes",
                    "network": "network structure or fields (e.g. embedding, dropout, channels)",
                }
                raise ValueError(
                    f"the checkpoints in {self.workdir!r} were written for another model: "
                    f"{'; '.join(what[k] for k in differ) or 'unreadable signature'} differ; use a fresh workdir"
                )
        elif jax.process_index() == 0:
            write_atomic(path, json.dumps(sig))

    def _digest_path(self, step: int) -> str:
        return os.path.join(self.workdir, "checksums", f"{step}.sha256")

    def save(self):
        """Write a checkpoint of the current step (atomic; orbax keeps the last ``keep`` ones) and the SHA-256 of
        its arrays (``checksums/<step>.sha256``), verified on restore. Only finite states are written: a
        non-finite loss or parameter raises ``FloatingPointError`` and leaves every checkpoint on disk as it was (so
        keep-N never replaces good checkpoints by diverged ones)."""
        import orbax.checkpoint as ocp

        step = int(self.state["step"])
        self._check_finite(step)
        self._guarded(lambda: self._save(step, ocp), f"checkpoint {step}")

    def _save(self, step, ocp):
        if jax.process_index() == 0:
            write_atomic(self._digest_path(step), state_digest(self.state))
        self.manager.save(step, args=ocp.args.StandardSave(self.state), force=True)

    def _check_finite(self, step: int, loss: float | None = None):
        finite = jax.tree.map(lambda a: jnp.all(jnp.isfinite(a)), (self.state["params"], self.state["ema"]))
        if loss is not None and not math.isfinite(loss) or not bool(jnp.all(jnp.stack(jax.tree.leaves(finite)))):
            what = "the loss" if loss is not None and not math.isfinite(loss) else "the parameters"
            kept = max(self.manager.all_steps(), default=None) if self.manager else None
            keep = (
                f" Nothing was saved after checkpoint {kept}, which is kept; resume from it with a lower "
                f"learning rate (train.lr is {self.cfg.lr:g}) or with gradient clipping (train.grad_clip)."
                if kept is not None
                else " No checkpoint was written; lower train.lr or clip gradients."
            )
            raise FloatingPointError(f"training diverged: {what} became non-finite by step {step}.{keep}")

    def _guarded(self, action, what: str):
        """Run a checkpoint write; a failure (disk full, read-only folder, …) becomes one ``CheckpointError``
        paragraph (orbax's and tensorstore's tracebacks are captured) naming what is kept and what to do."""
        error = None
        with _quiet_stderr() as captured:
            try:
                action()
            except Exception as e:  # orbax wraps I/O errors in its own types: find the OSError in the chain
                cause = _os_error_in(e)
                code = re.search(r"os_error_code='?(\d+)", str(e))  # tensorstore reports the errno in its message
                if cause is None and code:
                    cause = OSError(int(code.group(1)), os.strerror(int(code.group(1))))
                if cause is not None:
                    error = describe_os_error(cause, self.workdir)
                else:
                    reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
                    error = f"{type(e).__name__}: {reason}"
                time.sleep(0.2)  # let failed background writes finish printing while stderr is captured
                gc.collect()
        if error:
            # the run stops here: the failed writes' leftover tasks are not worth tracebacks at exit
            logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
            steps = sorted(self.manager.all_steps()) if self.manager else []
            done = [s for s in steps if os.path.exists(self._digest_path(s))]
            kept = f"the last complete checkpoint is {done[-1]}" if done else "no complete checkpoint was written"
            raise CheckpointError(
                f"could not write {what}: {error}; {kept}. Free space or fix the folder's "
                "permissions, then rerun the same command to resume from it."
            )
        if captured.text:
            print(captured.text, end="", file=sys.stderr)

    def restore(self, which: str | int = "latest") -> int:
        """Load a checkpoint and verify its checksum; returns its step (0 when there is none).

        ``which``: ``"latest"``, ``"previous"`` (the one before the latest: the fallback when the latest is
        corrupt) or a step number. When :meth:`train` continues from it, newer checkpoints are moved to
        ``workdir/unusable_checkpoints/``. A checkpoint that cannot be read,
        whose arrays do not match their checksum, or that belongs to another model raises :class:`CheckpointError`
        with one paragraph saying what and what to do.
        """
        import orbax.checkpoint as ocp

        self._check_signature()
        self.manager.reload()
        steps = sorted(self.manager.all_steps())
        if not steps:
            if which not in ("latest", "previous"):
                raise CheckpointError(f"no checkpoint {which} in {self.workdir!r}: it holds none")
            return 0
        if which == "latest":
            step = steps[-1]
        elif which == "previous":
            if len(steps) < 2:
                raise CheckpointError(f"no checkpoint before {steps[-1]} in {self.workdir!r} to fall back to")
            step = steps[-2]
        elif isinstance(which, int) or str(which).isdigit():
            step = int(which)
            if step not in steps:
                raise CheckpointError(f"no checkpoint {step} in {self.workdir!r}; it holds {steps}")
        else:
            raise ValueError(f"which must be 'latest', 'previous' or a step number, got {which!r}")
        fallback = (
            f"Resume from the checkpoint before it with `--resume-from previous` (train.py) or "
            f"Trainer.restore('previous'); it holds {steps}."
        )
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), self.state)
        error = None
        with _quiet_stderr() as captured:  # a failed read makes orbax/tensorstore print dozens of tracebacks
            try:
                state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # errors of many kinds: one line of them is enough
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                error = (
                    f"checkpoint {step} in {self.workdir!r} cannot be read ({type(e).__name__}: "
                    f"{reason[:200]}{'…' if len(reason) > 200 else ''}). {fallback}"
                )
                time.sleep(0.5)  # let the failed reads' callbacks finish printing while stderr is captured
            gc.collect()  # unretrieved task exceptions are logged when collected
        if error:
            raise CheckpointError(error)
        if captured.text:  # a successful restore keeps whatever it printed
            print(captured.text, end="", file=sys.stderr)
        digest_file = self._digest_path(step)
        if os.path.exists(digest_file):
            with open(digest_file) as f:
                want = f.read().strip()
            if state_digest(state) != want:
                raise CheckpointError(
                    f"checkpoint {step} in {self.workdir!r} does not match its checksum "
                    f"({digest_file}): its arrays were altered or damaged on disk. {fallback}"
                )
        self.state = state
        return int(self.state["step"])

    def _set_aside_checkpoints_after(self, step: int):
        """Training continues from ``step``: newer checkpoints (a corrupt latest one, or an abandoned branch) move
        to ``workdir/unusable_checkpoints/`` so they are neither overwritten nor restored later."""
        newer = [s for s in self.manager.all_steps() if s > step]
        if not newer:
            return
        if jax.process_index() == 0:
            aside = os.path.join(self.workdir, "unusable_checkpoints")
            os.makedirs(aside, exist_ok=True)
            for s in newer:
                shutil.move(
                    os.path.join(self.manager.directory, str(s)), os.path.join(aside, f"{s}_{int(time.time())}")
                )
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("diffjax_set_aside_checkpoints")
        self.manager.reload()

    # ---- evaluation and logging ----------------------------------------------------------------
    def evaluate(self) -> dict:
        """Held-out loss of the EMA parameters, and a sample metric with ``eval_samples`` (:mod:`.evaluation`)."""
        src = self.eval_data or self.data
        out = {"eval_loss": heldout_loss(self._eval, self.state["ema"], src, self._global_batch, self.cfg.eval_batches)}
        if self.cfg.eval_samples > 0:
            png = None
            if self.workdir and jax.process_index() == 0:
                png = os.path.join(self.workdir, f"samples_step{int(self.state['step']):07d}.png")
            out.update(
                sample_score(
                    self.sde,
                    self.model(),
                    src,
                    self.cfg.eval_samples,
                    self.cfg.eval_solver,
                    self.cfg.eval_nfe,
                    self.cfg.seed + 17,
                    png,
                )
            )
        return out

    def _drop_logged_rows_after(self, step: int):
        """A resumed run re-logs the steps after its checkpoint: drop the rows an interrupted run logged beyond it
        (no duplicated or stale rows in metrics.jsonl / metrics.csv)."""
        if not self.workdir or jax.process_index() != 0:
            return
        for name in ("metrics.jsonl", "metrics.csv"):
            path = os.path.join(self.workdir, name)
            if not os.path.exists(path):
                continue
            with open(path, newline="") as f:
                lines = f.readlines()
            if name.endswith(".jsonl"):
                keep = [l for l in lines if l.strip() and json.loads(l).get("step", 0) <= step]
            else:
                col = next(csv.reader(lines[:1]), []).index("step") if lines else 0
                keep = lines[:1] + [l for l in lines[1:] if int(float(next(csv.reader([l]))[col])) <= step]
            if len(keep) != len(lines):
                write_atomic(path, "".join(keep))

    def _log(self, row: dict):
        if not self.workdir or jax.process_index() != 0:
            return
        with open(os.path.join(self.workdir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        path = os.path.join(self.workdir, "metrics.csv")
        new = not os.path.exists(path)
        fields = sorted(row)
        if not new:  # the columns are the header's (rows with evaluation metrics have more keys than the others)
            with open(path, newline="") as f:
                fields = next(csv.reader(f), fields)
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.cfg.tensorboard:
            if self._tb is None:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.path.join(self.workdir, "tensorboard"))
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, row["step"])
            self._tb.flush()

    # ---- the loop ------------------------------------------------------------------------------
    def train(self, steps: int | None = None, resume: bool = True) -> list[dict]:
        """Run until ``steps`` (default ``cfg.steps``) optimizer steps are done; resumes from the latest
        checkpoint in ``workdir`` when ``resume``. Returns the logged rows of this call.

        The workdir is locked for the call (:class:`diffjax.files.FolderLock`: a second trainer on it is refused).
        SIGINT/SIGTERM (Ctrl-C) finishes the current step, saves it and raises :class:`TrainingInterrupted`. A
        checkpoint with more steps than asked for raises ValueError (nothing to do)."""
        total = int(steps or self.cfg.steps)
        lock = FolderLock(self.workdir, "training") if self.workdir and jax.process_index() == 0 else None
        if lock is not None:
            try:
                lock.acquire()
            except OSError as e:
                raise CheckpointError(
                    f"{describe_os_error(e, self.workdir)}: training needs a writable workdir (nothing was written)"
                ) from None
        try:
            with _Interrupts() as stop:
                return self._train(total, resume, stop)
        finally:
            if lock is not None:
                lock.release()

    def _train(self, total, resume, stop):
        start = self.restore() if (self.manager and resume) else int(self.state["step"])
        if self.manager and not resume:
            self._check_signature()
        if start > total:
            raise ValueError(
                f"{self.workdir!r} holds a checkpoint at step {start} > steps={total}: nothing to do "
                "(ask for more steps, or use another workdir)"
            )
        if self.manager and start < total:
            self._set_aside_checkpoints_after(start)
        self._drop_logged_rows_after(start)
        rows, t_last, s_last = [], time.time(), start
        bar = None
        if self.cfg.progress and jax.process_index() == 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=start, desc="train", dynamic_ncols=True)
        step = start
        while step < total:
            x, labels = self._global_batch(self.data, step)
            self.state, info = self._step(self.state, x, labels)
            step += 1
            if bar is not None:
                bar.update(1)
            last = step == total
            if step % max(self.cfg.log_every, 1) == 0 or last:
                loss = float(info["loss"])
                if not math.isfinite(loss):
                    self._check_finite(step, loss)
                now = time.time()
                row = {
                    "step": step,
                    "loss": loss,
                    "grad_norm": float(info["grad_norm"]),
                    "steps_per_s": (step - s_last) / max(now - t_last, 1e-9),
                }
                t_last, s_last = now, step
                if (self.cfg.eval_every and step % self.cfg.eval_every == 0) or last:
                    row.update(self.evaluate())
                rows.append(row)
                self._log(row)
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.4f}", it_s=f"{row['steps_per_s']:.1f}")
            if self.manager and ((self.cfg.ckpt_every and step % self.cfg.ckpt_every == 0) or last or stop.signal):
                loss = float(info["loss"])
                if not math.isfinite(loss):
                    self._check_finite(step, loss)
                self.save()
            if stop.signal:
                break
        if bar is not None:
            bar.close()
        if self._tb is not None:  # complete the event file (a later train() call opens a new one)
            self._tb.close()
            self._tb = None
        if self.manager:
            self._guarded(self.manager.wait_until_finished, f"checkpoint {max(self.manager.all_steps(), default=step)}")
        if stop.signal:
            raise TrainingInterrupted(step, self.manager is not None)
        return rows

    # ---- using the result ----------------------------------------------------------------------
    def model(self, ema: bool = True, labels: Any = None):
        """The trained network as a :class:`diffjax.prediction.Model` for ``dj.sample`` (EMA weights by default)."""
        net = self.net(self.state["ema" if ema else "params"])
        recipe = self.loss_cfg.recipe(self.sde)
        return Model(self.sde, Preconditioned(self.sde, recipe, net, labels), recipe.prediction)


def _os_error_in(e: BaseException):
    """The first ``OSError`` in an exception's cause/context chain, or None."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


class _Interrupts:
    """Within the block, SIGINT and SIGTERM set ``signal`` instead of raising (main thread only; elsewhere the
    default handling stays). A second Ctrl-C raises at once."""

    def __enter__(self):
        import signal
        import threading

        self.signal, self._old = None, {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        print(
            f"\n{'Ctrl-C' if signum == 2 else 'SIGTERM'}: finishing the current step and saving it "
            "(again to stop at once)",
            file=sys.stderr,
        )

    def __exit__(self, *exc):
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False
