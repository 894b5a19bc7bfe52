"""Training launched by torchrun with two CPU processes on the gloo backend, as `accelerate launch` would."""
import os, subprocess, sys
from pathlib import Path
import pytest
from sentence_transformers import SentenceTransformer
from embedtune.chunk import chunk_documents, split_chunks
from embedtune.core import load_json
from embedtune.load import demo_corpus
from embedtune.llm import chat_model
from embedtune.questions import QuestionCache
from embedtune.dataset import make_datasets, write_dataset

REPLIES = str(Path(__file__).parent/"replies"/"train.jsonl")  # the local model's replies, recorded


@pytest.fixture(scope="module")
def tiny_train(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    splits = split_chunks(chunk_documents(demo_corpus(["assert", "pass", "del", "global", "return"])), fractions=(1, 0, 0))
    dss, _ = make_datasets(splits, chat_model("local", replay=REPLIES), 2, limits={"train": 8}, cache=QuestionCache(d/"c.sqlite"), progress=False)
    return write_dataset(dss["train"], d/"train_dataset.json")


@pytest.mark.slow
def test_two_cpu_processes_with_gloo(tiny_train, tmp_path):
    torchrun = Path(sys.executable).parent/"torchrun"
    script = Path(__file__).parent/"ddp_train.py"
    r = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--standalone", str(script), str(tiny_train), str(tmp_path)],
                       capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ranks = [load_json(tmp_path/f"rank{i}.json") for i in (0, 1)]
    assert [(x["rank"], x["world_size"], x["backend"]) for x in ranks] == [(0, 2, "gloo"), (1, 2, "gloo")]
    assert ranks[0]["train_loss"] > 0 and ranks[0]["gathers"]  # each process's questions meet the chunks of both
    model = SentenceTransformer(str(tmp_path))  # saved once, by the first process, and loadable
    assert model.encode("What does assert do?").shape == (384,)
    assert (tmp_path/"README.md").exists()
