"""Train a diffusion model from a config; resumes from the latest checkpoint in --workdir.

    python experiments/train.py --config experiments/configs/default.py:toy-edm --workdir runs/toy_edm [--set train.steps=500]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build, load_config, to_dict  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="path/to/config.py[:spec]")
    p.add_argument("--workdir", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.steps=100")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run")
    a = p.parse_args(argv)
    cfg = to_dict(load_config(a.config, a.set))
    os.makedirs(a.workdir, exist_ok=True)
    path = os.path.join(a.workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if a.no_resume:
            raise SystemExit(f"{a.workdir} already holds a run; drop --no-resume to continue it")
        if json.loads(json.dumps(old)) != json.loads(json.dumps(cfg)):
            changed = sorted(k for k in cfg if old.get(k) != json.loads(json.dumps(cfg[k])))
            print(f"note: config differs from the saved one in {changed}; continuing with the new values")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    trainer, _, _ = build(cfg, a.workdir)
    rows = trainer.train()
    if rows:
        print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
