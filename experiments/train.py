"""Train a diffusion model from a config; resumes from the latest checkpoint in --workdir.

python experiments/train.py --config experiments/configs/default.py:toy-edm --workdir runs/toy_edm \
    [--set train.steps=500]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build, check_names, load_config, load_plugins, to_dict  # noqa: E402

from diffjax.files import FolderInUse, FolderLock, describe_os_error, write_atomic  # noqa: E402
from diffjax.training.trainer import CheckpointError, TrainingInterrupted  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="path/to/config.py[:spec]")
    p.add_argument("--workdir", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.steps=100")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run")
    p.add_argument(
        "--resume-from",
        default="latest",
        help="'latest' (default), 'previous' (the checkpoint before the latest, e.g. when the latest is "
        "corrupt) or a step number",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="multi-process data parallelism with jax.distributed: the coordinator, process count and id "
        "come from the cluster (SLURM, Open MPI, TPU pods, Kubernetes) or from the three options below",
    )
    p.add_argument("--coordinator", default=None, help="host:port of process 0 (with --distributed)")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE.py",
        help="import a file that registers a diffusion or a network first (repeatable)",
    )
    p.add_argument("--debug", action="store_true", help="full tracebacks instead of one-paragraph errors")
    a = p.parse_args(argv)
    try:
        run(a)
    except TrainingInterrupted as e:  # Ctrl-C / SIGTERM: the step was finished and saved
        print(str(e), file=sys.stderr)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        print("interrupted before training started: nothing was written", file=sys.stderr)
        raise SystemExit(130) from None
    except (FloatingPointError, CheckpointError, FolderInUse, ValueError, OSError) as e:
        if a.debug:
            raise
        msg = (
            describe_os_error(e, a.workdir)
            if isinstance(e, OSError) and not isinstance(e, FileNotFoundError)
            else str(e)
        )
        raise SystemExit(msg) from None


def run(a):
    load_plugins(a.plugin)
    try:
        cfg = to_dict(load_config(a.config, a.set))
    except (KeyError, ValueError) as e:
        raise SystemExit(str(e).strip('"')) from None
    if a.plugin:  # recorded in the run, so sample.py / evaluate.py load them too
        cfg["plugins"] = [os.path.abspath(p) for p in a.plugin]
    check_names(cfg)
    from diffjax.training import TrainConfig

    try:  # values checked before the run folder is touched (keep=0, steps=0, …)
        TrainConfig(**cfg["train"])
    except (TypeError, ValueError) as e:
        raise SystemExit(f"train config: {e}") from None
    path = os.path.join(a.workdir, "config.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise SystemExit(
                f"{path} is not valid JSON ({e}): the run folder is damaged (a truncated write?); restore "
                "the file or use another --workdir"
            ) from None
        if a.no_resume:
            raise SystemExit(f"{a.workdir} already holds a run; drop --no-resume to continue it")
        if json.loads(json.dumps(old)) != json.loads(json.dumps(cfg)):
            changed = sorted(k for k in cfg if old.get(k) != json.loads(json.dumps(cfg[k])))
            print(f"note: config differs from the saved one in {changed}; continuing with the new values")
    # nothing in the run folder is written before the checkpoint (if any) is known to fit this config
    if a.distributed:  # before anything touches a device
        import jax

        jax.distributed.initialize(a.coordinator, a.num_processes, a.process_id)
    elif a.coordinator or a.num_processes or a.process_id is not None:
        raise SystemExit("--coordinator/--num-processes/--process-id need --distributed")
    import jax

    lock = FolderLock(a.workdir, "training")
    if jax.process_index() == 0:  # one writer per run folder, before anything in it is written
        try:
            lock.acquire()
        except FolderInUse as e:
            raise SystemExit(str(e)) from None
        except OSError as e:
            raise SystemExit(
                f"{describe_os_error(e, a.workdir)}: training needs a writable --workdir (nothing was written)"
            ) from None
    try:
        train_locked(a, cfg, path)
    finally:
        lock.release()


def train_locked(a, cfg, path):
    trainer, _, _ = build(cfg, a.workdir)
    try:
        start = trainer.restore(a.resume_from)
    except (CheckpointError, ValueError) as e:
        raise SystemExit(str(e)) from None
    steps = cfg["train"]["steps"]
    if start > steps:
        raise SystemExit(
            f"{a.workdir} already holds a checkpoint at step {start} > train.steps={steps}: nothing to do "
            f"(raise train.steps to continue, or use another --workdir)"
        )
    write_atomic(path, json.dumps(cfg, indent=1))
    if start == steps:
        print(f"{a.workdir} is already at step {steps}: nothing to train")
        return
    rows = trainer.train(resume=False)  # the state was restored above
    if rows:
        print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
