"""The code examples of docs/GUIDE.md run as written."""

import pathlib
import re

import pytest

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "GUIDE.md"
BLOCKS = re.findall(r"```python\n(# example:.*?)```", GUIDE.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=lambda c: c.splitlines()[0][11:40])
def test_guide_example_runs(code):
    exec(compile(code, str(GUIDE), "exec"), {"__name__": "guide_example", "dj_root": str(GUIDE.parents[1])})
