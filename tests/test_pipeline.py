"""The pipeline notebook run by papermill with tiny parameters, as a batch user would run it."""
import json, subprocess, sys
from pathlib import Path
import pytest


def run_pipeline(root, out, cache, **params):
    out.mkdir(parents=True)
    exe = Path(sys.executable).parent/"papermill"
    args = [str(exe), str(root/"nbs/pipelines/finetune.ipynb"), str(out/"finetune.ipynb"), "-p", "out_dir", str(out),
            "-p", "cache_dir", str(cache)]
    for k, v in params.items(): args += ["-p", k, str(v)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads((out/"metrics.json").read_text())


def test_pipeline_writes_seed_format_datasets(root, tmp_path):
    m = run_pipeline(root, tmp_path/"a", tmp_path/"cache", max_train_chunks=3, max_eval_chunks=1, n_questions=2)
    out = tmp_path/"a"
    assert json.loads((out/"params.json").read_text())["max_train_chunks"] == 3
    for split, asked in [("train", 3), ("val", 1), ("test", 1)]:
        ds = json.loads((out/f"{split}_dataset.json").read_text())
        assert set(ds) == {"questions", "relevant_contexts", "corpus"}
        assert len({c for cs in ds["relevant_contexts"].values() for c in cs}) == asked
        assert all(cs[0] in ds["corpus"] for cs in ds["relevant_contexts"].values())
        assert m["datasets"][split]["LLM calls"] == asked
    ids = [set(json.loads((out/f"{s}_dataset.json").read_text())["corpus"]) for s in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])

    # A second run with other parameters: no edit to the notebook, and the shared cache answers what it already knows.
    m2 = run_pipeline(root, tmp_path/"b", tmp_path/"cache", max_train_chunks=4, max_eval_chunks=1, n_questions=2)
    assert m2["datasets"]["train"]["from cache"] == 3 and m2["datasets"]["train"]["LLM calls"] == 1
