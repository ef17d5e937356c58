"""Typed ``--set`` overrides and names checked before training (experiments/common.py, experiments/train.py)."""

import json
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from common import load_config, parse_override  # noqa: E402

CFG = str(ROOT / "experiments" / "configs" / "default.py")


@pytest.mark.parametrize(
    "text,current,want",
    [
        ("300", 4000, 300),
        ("-2", 1, -2),
        ("2.5", 1e-3, 2.5),
        ("3", 1e-3, 3.0),
        ("true", False, True),
        ("False", True, False),
        ("[1, 2, 2]", (1, 2), (1, 2, 2)),
        ("[]", (8,), ()),
        ("gddim", "edm_heun", "gddim"),
        ('"v"', "", "v"),
        ('{"sigma_max": 5}', {}, {"sigma_max": 5}),
        ("[0.5, 1]", [1.0], [0.5, 1]),
    ],
)
def test_override_parsed_as_the_fields_type(text, current, want):
    got = parse_override("k", text, current)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(
    "text,current,match",
    [
        ("2.7", 4000, "an integer"),
        ("true", 4000, "an integer"),
        ("abc", 4000, "an integer"),
        ('"false"', False, "true or false"),
        ("1", False, "true or false"),
        ("abc", 1e-3, "a finite number"),
        ("NaN", 1e-3, "a finite number"),
        ("3", (1, 2), "a JSON list"),
        ('["a"]', (1, 2), "a list of int"),
        ("[1]", {}, "a JSON object"),
    ],
)
def test_override_that_does_not_fit_is_rejected_with_the_key(text, current, match):
    with pytest.raises(ValueError, match=re.escape(f"--set train.x={text}: expected {match}")):
        parse_override("train.x", text, current)


def test_unknown_keys_name_the_choices():
    with pytest.raises(KeyError, match="unknown config key 'train.stpes'.*'steps'"):
        load_config(CFG + ":toy-edm", ["train.stpes=3"])
    with pytest.raises(KeyError, match="unknown config key 'trian.steps'"):
        load_config(CFG + ":toy-edm", ["trian.steps=3"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        load_config(CFG + ":toy-edm", ["train.steps"])
    assert load_config(CFG + ":toy-edm", ["model.channel_mult=[1, 2, 2]"])["model"]["channel_mult"] == (1, 2, 2)


def _train(tmp_path, *sets, work="run"):
    import train

    args = [
        "--config",
        CFG + ":toy-edm",
        "--workdir",
        str(tmp_path / work),
        "--set",
        "train.log_every=5",
        "--set",
        "train.ckpt_every=5",
        "--set",
        "model.width=16",
        "--set",
        "train.eval_samples=0",
    ]
    for s in sets:
        args += ["--set", s]
    train.main(args)


@pytest.mark.parametrize(
    "override,match",
    [
        ("train.steps=2.7", "expected an integer"),
        ('model.bf16="false"', "true or false"),
        ("model.channel_mult=3", "a JSON list"),
        (
            "train.eval_solver=edm_huen",
            "unknown solver \\(train.eval_solver\\) 'edm_huen' \\(did you mean 'edm_heun'\\?\\)",
        ),
        ("sample.solver=dpmpp", "unknown solver \\(sample.solver\\) 'dpmpp'"),
        ("data.name=rnig", "unknown data set 'rnig' \\(did you mean 'ring'\\?\\)"),
        ("model.kind=transformer", "unknown network"),
        ("diffusion.name=edn", "unknown diffusion 'edn' \\(did you mean 'edm'\\?\\)"),
    ],
)
def test_bad_config_stops_before_anything_is_written(tmp_path, override, match):
    with pytest.raises(SystemExit, match=match):
        _train(tmp_path, override)
    assert not (tmp_path / "run").exists()


def test_fewer_steps_than_the_checkpoint_is_reported(tmp_path, capsys):
    _train(tmp_path, "train.steps=10")
    saved = json.load(open(tmp_path / "run" / "config.json"))
    with pytest.raises(SystemExit, match="checkpoint at step 10 > train.steps=5"):
        _train(tmp_path, "train.steps=5")
    assert json.load(open(tmp_path / "run" / "config.json")) == saved  # the run's config is left as it was
    _train(tmp_path, "train.steps=10")
    assert "already at step 10" in capsys.readouterr().out
