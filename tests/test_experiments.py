"""The demo entry script runs end to end and writes its picture and table."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_demo_writes_picture_and_table(tmp_path):
    out = tmp_path / "demo"
    env = {"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "demo.py"), "--out", str(out), "--num", "200", "--nfe", "6"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    table = (out / "demo_table.md").read_text()
    assert "| dpmpp_2m | 6 |" in table and "unipc" in table
    png = (out / "demo_samples.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
