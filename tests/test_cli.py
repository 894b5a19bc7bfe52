"""`embedtune run` and `embedtune sweep` as a batch user calls them, with tiny parameters."""
import csv, json, subprocess, sys
from pathlib import Path

FILES = str(Path(__file__).resolve().parents[1]/"nbs"/"files")
TINY = ["-p", "sources", f"[{FILES}]", "-p", "chunk_size", "300", "-p", "max_train_chunks", "6", "-p", "max_eval_chunks", "2",
        "-p", "batch_size", "4", "-p", "eval_corpus", "split", "-p", "rag", "false"]


def embedtune(*args, cwd):
    r = subprocess.run([str(Path(sys.executable).parent/"embedtune"), *args], capture_output=True, text=True, cwd=cwd, timeout=3600)
    return r


def test_sweep_writes_one_table_for_all_runs(tmp_path):
    r = embedtune("sweep", *TINY, "-p", "epochs", "1,2", "-p", "cache_dir", str(tmp_path/"cache"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    [sweep] = (tmp_path/"runs").glob("sweep-*")
    rows = list(csv.DictReader(open(sweep/"sweep.csv")))
    assert [row["epochs"] for row in rows] == ["1", "2"]
    assert {"base ndcg@10", "fine-tuned ndcg@10", "fine-tuned @64 ndcg@10"} <= set(rows[0])
    assert (sweep/"sweep.png").stat().st_size > 0 and json.loads((sweep/"sweep.json").read_text())["failed"] == []
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert runs == ["01_epochs=1", "02_epochs=2"] and all((sweep/r/"metrics.json").exists() for r in runs)
    assert list(rows[0])[:2] == ["run", "epochs"]  # the one parameter that varies comes first, then the scores


def test_bad_parameter_is_refused_before_running(tmp_path):
    r = embedtune("run", "-p", "epochs", "three", cwd=tmp_path)
    assert r.returncode != 0 and "Parameter epochs takes a int" in r.stderr and not (tmp_path/"runs").exists()


def test_failed_run_keeps_its_folder_and_says_where(tmp_path):
    r = embedtune("run", "-p", "sources", "[missing_folder/]", cwd=tmp_path)
    assert r.returncode != 0 and "missing_folder" in r.stderr and "What was done is in" in r.stderr
    [run] = (tmp_path/"runs").iterdir()
    assert (run/"params.json").exists() and (run/"finetune.ipynb").exists()
