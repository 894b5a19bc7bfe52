"""Each module notebook is a test: run it as `nbdev-test` does, in its own process."""
import subprocess, sys
from pathlib import Path
import pytest

NBS = sorted((Path(__file__).resolve().parents[1]/"nbs").glob("*.ipynb"))


@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.stem)
def test_notebook(nb):
    exe = Path(sys.executable).parent/"nbdev-test"
    r = subprocess.run([str(exe), str(nb)], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
