import os, sys
from pathlib import Path
import pytest
sys.path.insert(0, str(Path(__file__).parent))
from stubs import run_slow

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def root(): return ROOT


@pytest.fixture(scope="session")
def local_llm():
    "One real local model for the whole session (loading it takes a second, calling it one at a time is required)."
    from embedtune.llm import local_chat_model
    return local_chat_model()


def pytest_unconfigure(config):
    "llama-cpp-python opens /dev/null twice at import and never closes it: close it so no warning follows the summary."
    utils = sys.modules.get("llama_cpp._utils")
    for f in (getattr(utils, "outnull_file", None), getattr(utils, "errnull_file", None)):
        if f: f.close()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a live model, several processes or a whole pipeline; runs under CI or with EMBEDTUNE_SLOW=1")


def pytest_collection_modifyitems(config, items):
    "Skip the tests marked slow, saying how to run them, unless under CI (which runs them all) or EMBEDTUNE_SLOW=1."
    if run_slow(): return
    skip = pytest.mark.skip(reason="slow: runs under CI=true, or here with EMBEDTUNE_SLOW=1 make test")
    for item in items:
        if "slow" in item.keywords: item.add_marker(skip)
