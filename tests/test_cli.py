"""`embedtune run` and `embedtune sweep` as a batch user calls them, with tiny parameters and the local model's replies
replayed (see tests/test_pipeline.py). Each starts a kernel per run, so these are slow: CI runs them."""
import csv, json, os, subprocess, sys
from pathlib import Path
import pytest
from embedtune.params import LIGHT

ROOT = Path(__file__).resolve().parents[1]
FILES = str(ROOT/"nbs"/"files")
SMALL = ["-y", json.dumps(LIGHT)]  # the small writer its replies were recorded with, no teacher: make install's parts
TINY = ["-y", f"sources: [{FILES}]", "-p", "chunk_size", "300", "-p", "max_train_chunks", "6", "-p", "max_eval_chunks", "2",
        "-p", "n_questions", "2", "-p", "batch_size", "4", "-p", "eval_corpus", "split", "-p", "rag", "false", *SMALL]
REPLIES = str(ROOT/"tests"/"replies"/"cli.jsonl")


def embedtune(*args, cwd):
    return subprocess.run([str(Path(sys.executable).parent/"embedtune"), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=3600, env={**os.environ, "EMBEDTUNE_REPLIES": REPLIES})


@pytest.mark.slow
def test_sweep_writes_one_table_and_names_the_failed_run(tmp_path):
    (tmp_path/"docs").mkdir()
    (tmp_path/"docs"/"broken.pdf").write_text("not a pdf")  # found only when the second run loads its sources
    grid = f"epochs: [1]\nsources: [[{FILES}], [{FILES}, {tmp_path/'docs'/'broken.pdf'}]]\n"
    (tmp_path/"grid.yaml").write_text(grid)
    r = embedtune("sweep", "grid.yaml", *TINY[2:], "-p", "cache_dir", str(tmp_path/"cache"), cwd=tmp_path)
    assert r.returncode != 0 and "1 of 2 runs failed: 02_" in r.stderr, r.stderr[-3000:]
    [sweep] = (tmp_path/"runs").glob("sweep-*")
    rows = list(csv.DictReader(open(sweep/"sweep.csv")))
    assert len(rows) == 1 and {"base ndcg@10", "fine-tuned ndcg@10", "fine-tuned @64 ndcg@10"} <= set(rows[0])
    failed = json.loads((sweep/"sweep.json").read_text())["failed"]
    assert [f["run"][:3] for f in failed] == ["02_"] and "is not a PDF file" in failed[0]["error"]
    assert (sweep/"sweep.png").stat().st_size > 0 and sorted(p.name[:3] for p in sweep.iterdir() if p.is_dir()) == ["01_", "02_"]


@pytest.mark.slow
def test_failed_run_keeps_its_folder_and_says_where(tmp_path):
    (tmp_path/"notes.pdf").write_text("not a pdf")
    r = embedtune("run", "-y", f"sources: [{tmp_path/'notes.pdf'}]", *SMALL, cwd=tmp_path)
    assert r.returncode != 0 and "is not a PDF file" in r.stderr and "What was done is in" in r.stderr
    [run] = (tmp_path/"runs").iterdir()
    assert (run/"params.json").exists() and (run/"finetune.ipynb").exists()
    assert json.loads((run/"metrics.json").read_text())["failed"]["step"] == "chunk"
