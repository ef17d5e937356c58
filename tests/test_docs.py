"""Every public module, function, class, method and property of the package has a docstring."""

import importlib
import inspect
import pkgutil

import diffjax


def _undocumented():
    for info in pkgutil.walk_packages(diffjax.__path__, "diffjax."):
        mod = importlib.import_module(info.name)
        if not mod.__doc__:
            yield info.name
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not obj.__doc__:
                yield f"{info.name}.{name}"
            if inspect.isclass(obj):
                for attr in vars(obj):
                    static = inspect.getattr_static(obj, attr)
                    if attr.startswith("_") or not (
                        inspect.isfunction(static) or isinstance(static, (property, staticmethod))
                    ):
                        continue
                    target = static if isinstance(static, property) else getattr(obj, attr)
                    if not inspect.getdoc(target):  # getdoc inherits from the base class's method
                        yield f"{info.name}.{name}.{attr}"


def test_every_public_name_has_a_docstring():
    missing = list(_undocumented())
    assert not missing, f"undocumented: {missing}"


def test_readme_is_a_front_page_whose_quick_start_runs_as_pasted():
    """README.md stays short (≤ 10 KB) and its quick-start block runs unchanged in a fresh namespace."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    assert len(text.encode()) <= 10_000, f"README.md is {len(text.encode())} bytes; move detail to docs/"
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, "README.md quick start", "exec"), {})
