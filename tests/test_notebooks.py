"""Each module notebook is a test, run as `nbdev-test` runs it, but in this process: the libraries are imported once
for all notebooks (torch, sentence-transformers and LangChain take ~12 s to import), and each notebook gets its own
namespace, working folder and environment. Cells flagged `slow` run under CI (or with EMBEDTUNE_SLOW=1)."""
import atexit, os, signal
from pathlib import Path
import pytest
from stubs import run_slow

NBS = sorted((Path(__file__).resolve().parents[1]/"nbs").glob("*.ipynb"))


@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.stem)
def test_notebook(nb, monkeypatch):
    import nbdev.test
    shells = []
    class Shell(nbdev.test.CaptureShell):  # kept, so that its clean-up at exit can be dropped (below)
        def __init__(self, *args, **kwargs): super().__init__(*args, **kwargs); shells.append(self)
    monkeypatch.setattr(nbdev.test, "CaptureShell", Shell)
    env, handler = dict(os.environ), signal.getsignal(signal.SIGINT)
    try: ok, _ = nbdev.test.test_nb(nb, skip_flags=[] if run_slow() else ["slow"], showerr=True)
    finally:  # what a notebook sets (a replay file, a runs folder) must not reach the next one
        os.environ.clear(); os.environ.update(env)
        signal.signal(signal.SIGINT, handler)
        for sh in shells: atexit.unregister(sh.atexit_operations)  # IPython's reset at exit: a full gc per shell, ~1.5 s each
    assert ok, f"{nb.name} failed: its error is printed above (on stderr)"
