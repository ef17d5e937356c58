"""Glue shared by the entry scripts: building the data, diffusion, network and trainer from a config."""
from __future__ import annotations

import importlib.util
import json

import jax.numpy as jnp
from flax import nnx

import diffjax as dj
import diffjax.data as dd
from diffjax.training import LossConfig, TrainConfig, Trainer


def load_config(path_spec: str, overrides=()):
    path, _, spec = path_spec.partition(":")
    mod_spec = importlib.util.spec_from_file_location("diffjax_config", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    cfg = mod.get_config(spec) if spec else mod.get_config()
    for item in overrides:
        key, _, value = item.partition("=")
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise KeyError(f"unknown config key {key!r}")
        node[leaf] = type(node[leaf])(json.loads(value)) if not isinstance(node[leaf], str) else value
    return cfg


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
        full = dd.tfds_source(d["name"], data_dir=d["data_dir"] or None, seed=cfg["train"]["seed"], flip=d["flip"])
    train, held = full.split(d["holdout"]) if hasattr(full, "split") else (full, None)
    shape = tuple(train.data_shape)
    kw = dict(cfg["diffusion"]["kwargs"])
    if cfg["diffusion"]["name"] == "blur":
        kw["shape"] = shape
    sde = dj.diffusions.get(cfg["diffusion"]["name"], **kw)
    m = cfg["model"]
    cld = isinstance(sde, dj.CLD)
    out_mult = 2 if cld and cfg["loss"]["cld_param"] == "eps" else 1
    common = dict(num_classes=m["num_classes"], in_mult=2 if cld else 1, out_mult=out_mult,
                  dtype=jnp.bfloat16 if m["bf16"] else jnp.float32, rngs=nnx.Rngs(params=cfg["train"]["seed"], dropout=1))
    if m["kind"] == "mlp":
        net = dj.models.MLP(shape, m["width"], m["depth"], embedding=m["embedding"], **common)
    else:
        net = dj.models.UNet(shape, m["channels"], tuple(m["channel_mult"]), m["num_blocks"], tuple(m["attn_resolutions"]),
                             m["dropout"], m["embedding"], **common)
    loss_cfg = LossConfig(cld_param=cfg["loss"]["cld_param"], label_dropout=cfg["loss"]["label_dropout"],
                          num_classes=m["num_classes"], fdm_warmup=cfg["loss"]["fdm_warmup"],
                          prediction=cfg["loss"].get("prediction", ""))
    tcfg = TrainConfig(**{k: v for k, v in cfg["train"].items()}, progress=True)
    return Trainer(sde, net, train, tcfg, loss_cfg, workdir, eval_data=held), train, held


def open_run(workdir):
    """(config, trainer, train source, checkpoint step) of a trained run; SystemExit with the reason otherwise."""
    import json
    import os

    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise SystemExit(f"no run in {workdir!r} (config.json missing): train one with experiments/train.py")
    with open(path) as f:
        cfg = json.load(f)
    trainer, train, _ = build(cfg, workdir)
    step = trainer.restore()
    if step == 0:
        raise SystemExit(f"{workdir!r} has no checkpoint yet")
    return cfg, trainer, train, step
