"""The package's structure, checked: dependency rules between subpackages (parsed imports), a sampling core that
needs no network library, diffusions that own their training recipe, deprecated names that still work."""

import ast
import pathlib
import subprocess
import sys
import warnings

import pytest

import diffjax as dj

PKG = pathlib.Path(dj.__file__).parent

# subpackage -> the diffjax subpackages it may import (itself always)
ALLOWED = {
    "files": set(),  # atomic writes, digests, folder locks: usable everywhere
    "diffusions": set(),
    "prediction": {"diffusions"},
    "testbed": {"diffusions"},
    "solvers": {"diffusions", "prediction", "interop", "files"},  # interop: adaptive diffrax references for learn()
    "interop": {"diffusions", "prediction"},
    "metrics": set(),
    "plotting": set(),
    "data": {"testbed"},  # the ring toy set samples the test bed's mixture
    "models": {"diffusions", "prediction", "files"},
    "training": {"diffusions", "prediction", "models", "solvers", "metrics", "plotting", "files"},
    "inception": set(),
    "fid": {"metrics", "files"},
}
NETWORK_LIBRARIES = ("flax", "optax", "orbax")
MAY_USE_NETWORK_LIBRARIES = {"models", "training", "inception"}
EXCEPTIONS = {("solvers/learn.py", "optax")}  # Adam for fitting a discretization, imported inside learn() only


def _imports(path: pathlib.Path):
    """Absolute names of every module ``path`` imports (top level and inside functions)."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x
                    yield from (f"{mod}.{a.name}" for a in node.names)
                    continue
                yield mod
            else:
                yield node.module


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "diffjax" and len(parts) > 1 else None


def test_dependency_rules_hold_for_every_module():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        unit = rel.parts[0].removesuffix(".py")
        if unit == "__init__":
            continue
        for mod in _imports(path):
            target = _unit(mod)
            if mod.split(".")[0] == "experiments" or "experiments" in mod.split("."):
                bad.append(f"{rel}: imports {mod} (nothing in the package imports experiments)")
            if target == "__version__":
                continue
            if (
                target
                and target != unit
                and target not in ALLOWED[unit]
                and not (unit == "models" and rel.name == "parameterization.py")
            ):
                bad.append(f"{rel}: imports {mod} ({unit} may use {sorted(ALLOWED[unit])})")
            if (
                mod.split(".")[0] in NETWORK_LIBRARIES
                and unit not in MAY_USE_NETWORK_LIBRARIES
                and (str(rel), mod.split(".")[0]) not in EXCEPTIONS
            ):
                bad.append(f"{rel}: imports {mod} (network libraries belong to {sorted(MAY_USE_NETWORK_LIBRARIES)})")
    assert not bad, "\n".join(bad)


def test_sampling_core_imports_no_network_library():
    """In a fresh interpreter, ``import diffjax`` and a ``dj.sample`` on the test bed load neither flax nor optax
    (nor orbax, diffrax, tensorflow-datasets)."""
    code = (
        "import sys, jax, diffjax as dj\n"
        "sde = dj.VP(); data = dj.testbed.ring()\n"
        "x = dj.sample(jax.random.key(0), sde, data.score_fn(sde), 'dpmpp_2m', nfe=5, shape=(8, 2))\n"
        "x = dj.sample(jax.random.key(0), dj.Flow(), data.velocity_fn(dj.Flow()), 'unipc', nfe=5, shape=(8, 2),\n"
        "              kind='velocity')\n"
        "libs = {'flax', 'optax', 'orbax', 'diffrax', 'tensorflow_datasets'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & libs))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout


def test_a_diffusion_without_a_recipe_fails_clearly():
    """A 2×2-block diffusion that defines no training recipe: a precise error, never a silent VP fallback."""
    from diffjax.diffusions.base import LinearDiffusion

    class NoRecipe(LinearDiffusion):
        block_size = 2

    with pytest.raises(NotImplementedError, match="no training recipe.*training_recipe"):
        dj.models.precondition(NoRecipe(), lambda x, c, l: x)
    assert type(dj.VP().training_recipe()).__name__ == "EpsRecipe"
    assert dj.Flow().training_recipe().prediction == "velocity"
    assert dj.CLD().training_recipe().in_mult == 2


def test_renamed_solvers_keep_working_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'heun' is deprecated; use 'edm_heun'"):
        assert dj.solvers.get("heun") == dj.solvers.get("edm_heun")
    with pytest.warns(DeprecationWarning, match="gddim_3"):
        assert dj.solvers.get("gddim_2").name == "gddim_3"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dj.solvers.get("unipc").name == "unipc_3"  # a family default, not deprecated
    for name in dj.solvers.available():  # every solver's .name is its registry name
        assert dj.solvers.get(name).name == name
    from diffjax.solvers.scire import SciRE  # configurations outside the registry get distinct names

    variants = [
        dict(phi=0.5),
        dict(phi="schedule_2024"),
        dict(m=4),
        dict(order=3, intermediate="taylor"),
        dict(method="singlestep_fixed"),
        dict(method="multistep", order=3),
        dict(phi="one"),
    ]
    names = [SciRE(**kw).name for kw in variants]
    assert len(set(names)) == len(names) and not set(names) & set(dj.solvers.available()), names
    from diffjax.models import parameterization  # the old module path: re-exports for one release

    assert parameterization.Model is dj.prediction.Model


def test_sample_takes_the_model_and_the_former_score_keyword_warns():
    import jax

    sde, data = dj.VP(), dj.testbed.ring()
    f = data.score_fn(sde)
    x = dj.sample(jax.random.key(0), sde, model=f, solver="ddim", nfe=4, shape=(4, 2))
    with pytest.warns(DeprecationWarning, match="argument is `model`"):
        y = dj.sample(jax.random.key(0), sde, score=f, solver="ddim", nfe=4, shape=(4, 2))
    assert bool((x == y).all())
    with pytest.raises(TypeError, match="needs the model"):
        dj.sample(jax.random.key(0), sde, solver="ddim", nfe=4, shape=(4, 2))


def test_renamed_training_arguments_keep_working_with_a_warning():
    import jax.numpy as jnp

    from diffjax.training import LossConfig, diffusion_loss

    with pytest.warns(DeprecationWarning, match="fdm_warmup_images"):
        cfg = LossConfig(fdm_warmup=200)
    tr = dj.training.Trainer(
        dj.FDM(),
        dj.models.MLP((2,), 8, 1, rngs=__import__("flax").nnx.Rngs(0)),
        dj.data.toy("ring", 100),
        dj.training.TrainConfig(batch_size=16),
        cfg,
    )
    assert tr.loss_cfg.fdm_warmup_images == 200 * 16
    net = lambda x, c, labels: x
    x0 = jnp.ones((4, 2))
    key = __import__("jax").random.key(0)
    with pytest.warns(DeprecationWarning, match="images="):
        old = diffusion_loss(dj.FDM(), net, key, x0, step=3, cfg=LossConfig(fdm_warmup_images=100.0))
    assert float(old) == float(
        diffusion_loss(dj.FDM(), net, key, x0, images=12, cfg=LossConfig(fdm_warmup_images=100.0))
    )
