"""Glue shared by the entry scripts: building the data, diffusion, network and trainer from a config."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import sys

import jax.numpy as jnp
from flax import nnx

import diffjax as dj
import diffjax.data as dd
from diffjax.training import LossConfig, TrainConfig, Trainer
from diffjax.training.checkpoints import CheckpointError, state_digest


def parse_override(key: str, text: str, current):
    """``text`` parsed as the type of the field's current value; ValueError naming the key otherwise.

    bool: ``true``/``false``; int: an integer literal; float: any finite number; str: the text as given (JSON
    quotes stripped); tuple/list: a JSON list whose items have the type of the current items; dict: a JSON object.
    """

    def fail(what):
        return ValueError(f"--set {key}={text}: expected {what} ({key} is {current!r})")

    if isinstance(current, str):
        return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text
    if isinstance(current, bool):
        if text.lower() not in ("true", "false"):
            raise fail("true or false")
        return text.lower() == "true"
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if isinstance(current, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise fail("an integer")
        return value
    if isinstance(current, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise fail("a finite number")
        return float(value)
    if isinstance(current, (tuple, list)):
        if not isinstance(value, list):
            raise fail("a JSON list such as [1, 2]")
        kinds = {type(v) for v in current}
        if kinds and any(type(v) not in kinds and not (float in kinds and type(v) is int) for v in value):
            raise fail(f"a list of {' or '.join(sorted(k.__name__ for k in kinds))}")
        return type(current)(value)
    if hasattr(current, "keys"):
        if not isinstance(value, dict):
            raise fail("a JSON object")
        return value
    raise fail(f"a value of type {type(current).__name__}")


def load_plugins(paths=()):
    """Import Python files that register diffusions (``dj.diffusions.register``) or networks
    (``dj.models.register_network``) before the config is read."""
    for i, path in enumerate(paths):
        if not os.path.exists(path):
            raise SystemExit(f"--plugin {path!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"diffjax_plugin_{i}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)


def load_config(path_spec: str, overrides=()):
    path, _, spec = path_spec.partition(":")
    if not os.path.isfile(path):
        raise ValueError(
            f"config file {path!r} does not exist (expected path/to/config.py:NAME, e.g. "
            "experiments/configs/default.py:toy-edm)"
        )
    mod_spec = importlib.util.spec_from_file_location("diffjax_config", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    if not spec:
        import inspect

        default = inspect.signature(mod.get_config).parameters
        default = next(iter(default.values())).default if default else None
        print(
            f"note: no :NAME after {path}; using its default config"
            + (f" {default!r}" if isinstance(default, str) else ""),
            file=sys.stderr,
        )
    cfg = mod.get_config(spec) if spec else mod.get_config()
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--set needs KEY=VALUE, got {item!r}")
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            if p not in node or not hasattr(node[p], "keys"):
                raise KeyError(f"unknown config key {key!r}")
            node = node[p]
        if leaf not in node:
            raise KeyError(f"unknown config key {key!r}; {'.'.join(parents) or 'the config'} has {sorted(node)}")
        node[leaf] = parse_override(key, value, node[leaf])
    return cfg


def check_names(cfg):
    """Every name in the config that is looked up later (data set, diffusion, network, solvers) checked now, with
    the accepted values in the message (SystemExit)."""
    import difflib

    from configs.default import TFDS

    def bad(what, name, accepted):
        close = difflib.get_close_matches(str(name), [str(a) for a in accepted], 1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return SystemExit(f"unknown {what} {name!r}{hint}; accepted: {sorted(accepted)}")

    d = cfg["data"]["name"]
    if d not in dd.toy_names() and d != "digits" and d not in TFDS and not cfg["data"]["data_dir"]:
        raise bad("data set", d, dd.toy_names() + ["digits"] + sorted(TFDS) + ["<any TFDS name with data.data_dir>"])
    if cfg["diffusion"]["name"] not in dj.diffusions.available():
        raise bad("diffusion", cfg["diffusion"]["name"], dj.diffusions.available())
    if cfg["model"]["kind"] not in dj.models.available_networks():
        raise bad("network (model.kind)", cfg["model"]["kind"], dj.models.available_networks())
    for key in ("train.eval_solver", "sample.solver"):
        sec, leaf = key.split(".")
        if not dj.solvers.known(cfg[sec][leaf]):
            raise bad(f"solver ({key})", cfg[sec][leaf], dj.solvers.available())


def to_dict(cfg):
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def build(cfg, workdir=None):
    """(trainer, source) from a config dict."""
    d = cfg["data"]
    if d["name"] in dd.toy_names():
        full = dd.toy(d["name"], 20000, seed=cfg["train"]["seed"])
    elif d["name"] == "digits":
        full = dd.digits(d["size"], seed=cfg["train"]["seed"], flip=d["flip"])
    else:
        try:  # not prepared / no data_dir / no tensorflow-datasets: the reason and the recipe, not a traceback
            full = dd.tfds_source(d["name"], data_dir=d["data_dir"] or None, seed=cfg["train"]["seed"], flip=d["flip"])
        except (ValueError, OSError, ImportError) as e:
            raise SystemExit(f"data set {d['name']!r}: {e}") from None
    train, held = full.split(d["holdout"]) if hasattr(full, "split") else (full, None)
    shape = tuple(train.data_shape)
    kw = dict(cfg["diffusion"]["kwargs"])
    factory = dj.diffusions.factory(cfg["diffusion"]["name"])
    if getattr(factory, "needs_data_shape", False):
        kw.setdefault("shape", shape)
    sde = factory(**kw)
    m = cfg["model"]
    loss_cfg = LossConfig(
        cld_param=cfg["loss"]["cld_param"],
        label_dropout=cfg["loss"]["label_dropout"],
        num_classes=m["num_classes"],
        fdm_warmup_images=cfg["loss"]["fdm_warmup_images"],
        prediction=cfg["loss"].get("prediction", ""),
    )
    # the diffusion's recipe says how many channels the network sees and returns (CLD: 2 in)
    recipe = dataclasses.replace(loss_cfg, fdm_warmup_images=0.0).recipe(sde)
    net = dj.models.build_network(
        m["kind"],
        shape,
        m,
        num_classes=m["num_classes"],
        in_mult=recipe.in_mult,
        out_mult=recipe.out_mult,
        dtype=jnp.bfloat16 if m["bf16"] else jnp.float32,
        rngs=nnx.Rngs(params=cfg["train"]["seed"], dropout=1),
    )
    tcfg = TrainConfig(**{k: v for k, v in cfg["train"].items()}, progress=True)
    return Trainer(sde, net, train, tcfg, loss_cfg, workdir, eval_data=held), train, held


def open_run(workdir):
    """(config, trainer, train source, checkpoint step) of a trained run; SystemExit with the reason otherwise."""
    import json
    import os

    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise SystemExit(f"no run in {workdir!r} (config.json missing): train one with experiments/train.py")
    try:
        with open(path) as f:
            cfg = json.load(f)
        load_plugins(cfg.get("plugins", []))
        check_names(cfg)
        trainer, train, _ = build(cfg, workdir)
        step = trainer.restore()
    except CheckpointError as e:
        raise SystemExit(str(e)) from None
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
        what = (
            f"{path} is not valid JSON ({e})"
            if isinstance(e, json.JSONDecodeError)
            else f"{path} does not describe the run's checkpoints ({type(e).__name__}: {str(e)[:300]})"
        )
        raise SystemExit(
            f"cannot open the run in {workdir!r}: {what}. Restore the run's own config.json, or use another --workdir."
        ) from None
    if step == 0:
        raise SystemExit(f"{workdir!r} has no checkpoint yet")
    return cfg, trainer, train, step


@dataclasses.dataclass
class Opened:
    """What the entry scripts need of a model, a trained run or a published checkpoint: its diffusion, data shape,
    classes, an identity for file names and caches (``ckpt<step>`` or ``sha<digest>``), the output folder, the
    sampling defaults, the reference data (a run's training data; None for a checkpoint) and how to make its model."""

    sde: object
    data_shape: tuple
    num_classes: int
    identity: str
    out_dir: str
    defaults: dict
    model: object  # (labels=None, raw=False) -> Model
    guided: object = None  # (labels, scale) -> Model, or None when the model has no guidance
    reference: object = None
    data_id: str | None = None
    kind: str = "run"
    step: int | None = None  # a run's checkpoint step


def default_out_dir(path: str) -> str:
    """Where the scripts write for a published checkpoint without --workdir: a folder beside it."""
    path = os.path.abspath(path).rstrip(os.sep)
    stem = path if os.path.isdir(path) else os.path.splitext(path)[0]
    return stem + "_diffjax"


def open_model(workdir=None, pretrained=None, pretrained_config=None) -> Opened:
    """A trained run (``workdir``) or a published checkpoint (``pretrained``; outputs in ``workdir`` or beside it);
    SystemExit with the reason otherwise."""
    if pretrained is None:
        if workdir is None:
            raise SystemExit("give --workdir (a trained run) or --pretrained PATH (a published checkpoint)")
        cfg, trainer, train, step = open_run(workdir)
        m = cfg["model"]

        def guided(labels, scale):
            net = trainer.net(trainer.state["ema"])
            return dj.models.guided(
                trainer.sde, net, labels, scale, m["num_classes"], cld_param=trainer.loss_cfg.cld_param
            )

        # the checkpoint's identity: its step and the SHA-256 of its arrays (two branches resumed from the same
        # step with other settings reach the same step with other weights)
        digest_file = trainer._digest_path(step)
        digest = open(digest_file).read().strip() if os.path.exists(digest_file) else state_digest(trainer.state)
        return Opened(
            trainer.sde,
            tuple(train.data_shape),
            int(m["num_classes"]),
            f"ckpt{step}-{digest[:12]}",
            workdir,
            dict(cfg["sample"]),
            lambda labels=None, raw=False: trainer.model(ema=not raw, labels=labels),
            guided,
            train,
            f"{cfg['data']['name']}:size{cfg['data'].get('size')}:seed{cfg['train']['seed']}",
            step=step,
        )
    import pickle

    try:
        pm = dj.models.load_pretrained(pretrained, config=pretrained_config)
    except (OSError, ValueError, pickle.UnpicklingError) as e:  # a refused pickle is an UnpicklingError
        raise SystemExit(f"cannot load {pretrained}: {e}") from None

    def model(labels=None, raw=False):
        if raw:
            raise SystemExit("--raw is for trained runs (a published checkpoint has one set of weights)")
        try:
            return pm.model(labels)
        except ValueError as e:
            raise SystemExit(str(e)) from None

    out = workdir or default_out_dir(pretrained)
    return Opened(
        pm.sde,
        tuple(pm.data_shape),
        pm.num_classes,
        "sha" + pm.info["digest"][:12],
        out,
        {"solver": "dpmpp_2m", "nfe": 20, "num": 64},
        model,
        None,
        None,
        None,
        "pretrained",
    )


def add_model_arguments(p, workdir_help="a trained run (experiments/train.py)"):
    """--workdir / --pretrained / --pretrained-config, shared by sample.py, evaluate.py and learn_solver.py."""
    p.add_argument(
        "--workdir",
        default=None,
        help=f"{workdir_help}; with --pretrained: where outputs go (default: a folder <checkpoint>_diffjax beside it)",
    )
    p.add_argument(
        "--pretrained",
        default=None,
        metavar="PATH",
        help="a published checkpoint: a diffusers folder, an EDM .pkl (or its .json/.npz conversion), "
        "a score_sde checkpoint (with --pretrained-config)",
    )
    p.add_argument(
        "--pretrained-config",
        default=None,
        metavar="NAME",
        help="score_sde checkpoints: the config's name, e.g. ve/cifar10_ncsnpp_continuous",
    )
