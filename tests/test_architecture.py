"""The package's structure, checked: dependency rules between subpackages (parsed imports), a sampling core that
needs no network library, diffusions that own their training recipe, one solver protocol, one path per public object."""

import ast
import pathlib
import subprocess
import sys

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


def test_solver_names_metadata_and_one_path_per_object():
    """Every registered solver reports its registry name; configurations outside the registry get distinct names;
    metadata are properties of the base class (one mechanism, no type-ignored overrides); removed names and
    keywords give a precise error; each public object has one path."""
    for name in dj.solvers.available():
        assert dj.solvers.get(name).name == name
    assert dj.solvers.get("unipc").name == "unipc_3"  # a family default
    from diffjax.solvers import SciRE, SciREMultistep, Solver

    variants = [
        SciRE(phi=0.5),
        SciRE(phi="schedule_2024"),
        SciRE(m=4),
        SciRE(stages=3, intermediate="taylor"),
        SciRE(allocation="fixed"),
        SciRE(phi="one"),
        SciREMultistep(history=3),
        SciREMultistep(version="v2", phi="one"),
    ]
    names = [s.name for s in variants]
    assert len(set(names)) == len(names) and not set(names) & set(dj.solvers.available()), names
    for meta in (
        "name",
        "stochastic",
        "scalar_only",
        "evals_per_step",
        "default_grid",
        "traceable",
        "learnable",
        "convergence_order",
    ):
        assert isinstance(vars(Solver)[meta], property), meta
    hits = [str(p) for p in PKG.rglob("*.py") if "type: ignore[override]" in p.read_text()]
    assert not hits, hits
    with pytest.raises(ValueError, match=r"unknown solver 'heun' \(did you mean .*'edm_heun'"):
        dj.solvers.get("heun")
    import jax

    sde, data = dj.VP(), dj.testbed.ring()
    with pytest.raises(TypeError, match="score"):
        dj.sample(jax.random.key(0), sde, score=data.score_fn(sde), solver="ddim", nfe=4, shape=(4, 2))
    with pytest.raises(TypeError, match="needs the model"):
        dj.sample(jax.random.key(0), sde, solver="ddim", nfe=4, shape=(4, 2))
    assert not hasattr(dj.models, "Model") and not (PKG / "models" / "parameterization.py").exists()
    with pytest.raises(TypeError, match="fdm_warmup"):
        dj.training.LossConfig(fdm_warmup=200)


def test_register_a_solver_of_your_own():
    """``dj.solvers.register`` makes a solver a name for dj.sample and learned files; bad registrations fail."""
    import dataclasses
    from typing import ClassVar

    import jax

    @dataclasses.dataclass(frozen=True)
    class HalfEuler(dj.solvers.ODEEuler):
        name: ClassVar[str] = "half_euler_test"

    sde, data = dj.VP(), dj.testbed.ring()
    dj.solvers.register("half_euler_test", HalfEuler)
    try:
        assert "half_euler_test" in dj.solvers.available()
        x = dj.sample(jax.random.key(0), sde, data.score_fn(sde), "half_euler_test", nfe=4, shape=(4, 2))
        y = dj.sample(jax.random.key(0), sde, data.score_fn(sde), "ode_euler", nfe=4, shape=(4, 2))
        assert bool((x == y).all())
        with pytest.raises(ValueError, match="already registered"):
            dj.solvers.register("half_euler_test", HalfEuler)
        dj.solvers.register("half_euler_test", HalfEuler, replace=True)
    finally:
        dj.solvers.unregister("half_euler_test")
    assert "half_euler_test" not in dj.solvers.available()
    with pytest.raises(ValueError, match="builds a solver named 'half_euler_test'"):
        dj.solvers.register("other_name", HalfEuler)
    with pytest.raises(TypeError, match="must build a diffjax Solver"):
        dj.solvers.register("not_a_solver", lambda: object())
    with pytest.raises(ValueError, match="already registered"):
        dj.solvers.register("ddim", dj.solvers.DDIM)


def test_every_slow_test_listed_exists():
    """tests/slow_tests.txt names real tests (file, function, and a parameter id the test can produce): a renamed
    or deleted test must leave the list, or it would silently move back into `make test`'s tier."""
    from conftest import slow_node_ids

    root = pathlib.Path(__file__).parent
    listed = slow_node_ids()
    assert listed, "the slow tier is empty: `make test-slow` would collect nothing"
    for node in sorted(listed):
        path, _, name = node.partition("::")
        func = name.split("[")[0]
        file = root.parent / path
        assert file.is_file(), f"slow_tests.txt: no file {path}"
        tree = ast.parse(file.read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == func for n in tree.body), (
            f"slow_tests.txt: no test {func} in {path}"
        )
