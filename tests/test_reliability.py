"""Bad input as a new user gives it: every parameter is checked before anything is loaded, each problem named with
what to change; no run folder is ever reused; `embedtune run` and `sweep` fail loudly and keep what was done."""
import json, os, subprocess, sys, threading, time
from pathlib import Path
import pytest
from embedtune.core import base_model_path
from embedtune.params import LIGHT, ParamError, check_params, new_run_folder

ROOT = Path(__file__).resolve().parents[1]
FILES = str(ROOT/"nbs"/"files")
MODEL = base_model_path()


def problems(**values) -> dict:
    "What check_params says of `values`, on what `make install` alone runs (LIGHT) unless they name others (an empty dict when fine)."
    try: check_params({**LIGHT, **values})
    except ParamError as e: return e.problems
    return {}


def embedtune(*args, cwd, env=None):
    "The `embedtune` command in a process of its own."
    return subprocess.run([str(Path(sys.executable).parent/"embedtune"), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env={**os.environ, **(env or {})})


def says(*args, cwd, monkeypatch) -> str:
    "What `embedtune ARGS` says when it stops (run in this process: quicker than a new one)."
    from embedtune.cli import main
    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as e: main(list(args))
    return str(e.value)


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    for k in ("OPENAI_API_KEY", "HF_TOKEN"): monkeypatch.delenv(k, raising=False)


# Wrong results that "succeeded" before: now refused, each with its reason
@pytest.mark.parametrize("name, value, says", [
    ("max_train_chunks", -1, "must be at least 0; 0 means every chunk"),
    ("max_eval_chunks", -5, "must be at least 0"),
    ("epochs", 0, "0 would save the base model as if fine-tuned"),
    ("batch_size", 1, "takes its negatives from the other pairs of a batch"),
    ("eval_corpus", "alll", "must be one of ['all', 'split'], got 'alll'"),
    ("split_method", "sorted", "must be one of ['random', 'ordered']"),
    ("rag_retriever", "sparse", "must be one of ['recommended', 'dense', 'hybrid']"),
    ("ragas_mode", "judged", "must be one of ['offline', 'online', 'auto']"),
    ("learning_rate", -1e-5, "must be above 0"),
    ("learning_rate", "fast", "takes a number"),
    ("learning_rate", 5.0, "must be above 0 and at most 1"),
    ("rag_k", 0, "must be between 1 and 100"),
    ("n_questions", 0, "must be between 1 and 20"),
    ("chunk_size", 10, "between 50 and 100000"),
    ("chunk_overlap", 800, "must be smaller than chunk_size (750)"),
    ("questions_per_call", 6, "is more than n_questions (2)"),
    ("split_fractions", [0.8, 0.1], "three non-negative numbers"),
    ("split_fractions", [0.9, 0.1, 0.0], "train and test need a share"),
    ("query_examples", [f"q{i}" for i in range(9)], "at most 8 example queries"),
    ("query_examples", [["only a query"]], "[query, passage] pair"),
    ("vibe_questions", ["ok?", ""], "list of questions (non-empty strings)"),
    ("epochs", "three", "takes a whole number"),
    ("rag", "perhaps", "takes true or false"),
    ("n_threads", 1000, "must be between 0 and 256"),
    ("eval_corpus_max", 10, "0 (no cap) or at least 100"),
])
def test_a_bad_value_is_named_with_what_to_change(name, value, says):
    assert says in problems(**{name: value}).get(name, ""), problems(**{name: value})


@pytest.mark.parametrize("values, name, says", [
    ({"sources": ["missing_folder/"]}, "sources", "'missing_folder/' does not exist"),
    ({"sources": [str(ROOT/"pyproject.toml")]}, "sources", "cannot read '.toml' files"),
    ({"sources": [str(ROOT/".ci")]}, "sources", "holds no file embedtune can read"),
    ({"eval_queries": FILES}, "eval_queries", "is a folder: give a JSONL file"),
    ({"cache_dir": str(ROOT/"pyproject.toml"/"cache")}, "cache_dir", "cannot be made or written"),
    ({"base_model": "./my-model"}, "base_model", "there is no folder './my-model'"),
    ({"base_model": FILES}, "base_model", "holds no model (no modules.json or config.json)"),
    ({"base_model": "not a model id!"}, "base_model", "neither a folder nor a Hugging Face model id"),
    ({"eval_queries": "queries.jsonl"}, "eval_queries", "there is no file 'queries.jsonl'"),
    ({"llm": "gpt-4o-mini"}, "llm", "OPENAI_API_KEY is not set"),
    ({"llm": "missing.gguf"}, "llm", "there is no file 'missing.gguf'"),
    ({"llm_base_url": "localhost:8000"}, "llm_base_url", "must be an http(s) URL"),
    ({"llm": "m", "llm_base_url": "http://127.0.0.1:9/v1", "llm_api_key_env": "sk-proj-123"}, "llm_api_key_env", "never the key itself"),
    ({"llm": "m", "llm_base_url": "http://127.0.0.1:9/v1", "llm_api_key_env": "NO_SUCH_KEY_VAR"}, "llm_api_key_env", "NO_SUCH_KEY_VAR is not set"),
    ({"llm_api_key_env": "MY_KEY"}, "llm_api_key_env", "llm_base_url, which is empty"),
    ({"compare_openai": True}, "compare_openai", "needs OPENAI_API_KEY"),
    ({"ragas_mode": "online"}, "ragas_mode", "needs OPENAI_API_KEY"),
    ({"push_to_hub": "me/model"}, "push_to_hub", "needs HF_TOKEN"),
    ({"push_to_hub": "not a repo"}, "push_to_hub", "like 'your-name/my-model'"),
    ({"cache_dir": str(ROOT/"pyproject.toml")}, "cache_dir", "is a file: give a folder"),
    ({"resume": True}, "resume", "needs out_dir"),
    ({"seed": 1}, "seed", "renamed random_seed"),
    ({"epoch": 3}, "epoch", "did you mean epochs?"),
])
def test_files_models_and_keys_are_checked_before_anything_loads(values, name, says):
    assert says in problems(**values).get(name, ""), problems(**values)


def test_a_file_that_is_no_gguf_model_is_refused(tmp_path):
    fake = tmp_path/"model.gguf"
    fake.write_text("<html>Not found</html>")  # what a failed download leaves
    assert "is not a GGUF model file" in problems(llm=str(fake))["llm"]


def test_every_problem_is_reported_at_once():
    found = problems(epochs=0, batch_size=1, eval_corpus="x", max_train_chunks=-1)
    assert list(found) == ["eval_corpus", "max_train_chunks", "epochs", "batch_size"]


def test_labelled_queries_are_checked_line_by_line_before_the_run(tmp_path):
    bad = tmp_path/"q.jsonl"
    bad.write_text('{"query": "a", "relevant": ["x"]}\nnot json\n')
    assert "line 2 is not JSON" in problems(eval_queries=str(bad))["eval_queries"]
    bad.write_text("".join(json.dumps({"query": f"q{i}", "relevant": ["x"]}) + "\n" for i in range(5)))
    assert "has 5 labelled queries; write at least 20" in problems(eval_queries=str(bad))["eval_queries"]


def test_online_features_follow_parameters_not_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET")
    p = check_params(LIGHT)  # a key in the environment turns nothing on
    assert (p["compare_openai"], p["ragas_mode"]) == (False, "offline")
    assert check_params({**LIGHT, "compare_openai": True})["compare_openai"] is True


# The run's folder: never reused
def test_two_runs_in_the_same_second_get_two_folders(tmp_path):
    made = []
    threads = [threading.Thread(target=lambda: made.append(new_run_folder(tmp_path, "20261202-120000"))) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert len(set(made)) == 8 and all(p.is_dir() for p in made)


def test_an_earlier_run_is_never_overwritten(tmp_path):
    run = tmp_path/"run"
    run.mkdir(); (run/"params.json").write_text(json.dumps(check_params({**LIGHT, "epochs": 2})))
    assert "holds an earlier run" in problems(out_dir=str(run))["out_dir"]
    assert problems(out_dir=str(run), epochs=2, resume=True) == {}  # an explicit resume of the same run
    assert "other values for epochs" in problems(out_dir=str(run), epochs=3, resume=True)["out_dir"]
    (tmp_path/"other").mkdir(); (tmp_path/"other"/"notes.txt").write_text("mine")
    assert "is not empty and holds no run" in problems(out_dir=str(tmp_path/"other"))["out_dir"]


# The command line
def test_a_bad_last_parameter_stops_the_command_before_anything_runs(tmp_path):
    t = time.time()
    r = embedtune("run", "-p", "epochs", "2", "-p", "resume", "true", cwd=tmp_path)  # resume is the notebook's last parameter
    took = time.time() - t
    assert r.returncode != 0 and "resume: needs out_dir" in r.stderr and not (tmp_path/"runs").exists()
    print(f"refused in {took:.1f} s")
    assert took < 5, took


def test_negative_numbers_are_values_not_options(tmp_path):
    r = embedtune("run", "-p", "learning_rate", "-1e-5", cwd=tmp_path)
    assert r.returncode != 0 and "learning_rate: must be above 0" in r.stderr and "expected" not in r.stderr


def test_out_dir_onto_an_earlier_run_is_refused_and_keeps_it(tmp_path, monkeypatch):
    run = tmp_path/"run"
    run.mkdir(); (run/"params.json").write_text(json.dumps({"epochs": 3})); (run/"metrics.json").write_text('{"kept": true}')
    for args in (["--out", str(run)], ["-p", "out_dir", str(run)]):
        assert "holds an earlier run" in says("run", *args, cwd=tmp_path, monkeypatch=monkeypatch)
    assert json.loads((run/"metrics.json").read_text()) == {"kept": True} and sorted(p.name for p in run.iterdir()) == ["metrics.json", "params.json"]


@pytest.mark.parametrize("grid, message", [
    (None, "There is no grid file"),
    ("epochs: [1, 3\n", "is not valid YAML"),
    ("- epochs\n", "must map parameters to values"),
    ("epoch: [1, 2]\n", "did you mean epochs?"),
    ("epochs: [1, 0]\n", "epochs (run 02_epochs=0): must be between 1 and 100"),
])
def test_sweep_grid_errors_are_clear(tmp_path, monkeypatch, grid, message):
    if grid is not None: (tmp_path/"grid.yaml").write_text(grid)
    assert message in says("sweep", "grid.yaml", cwd=tmp_path, monkeypatch=monkeypatch)
    assert not (tmp_path/"runs").exists()


def test_a_hub_token_is_checked_before_the_run(monkeypatch):
    "A refused or unreachable HF_TOKEN stops the run now, not after the training (a stand-in Hub on 127.0.0.1)."
    import http.server
    from huggingface_hub import constants
    from embedtune.params import _hub_repo
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the tests run offline; this Hub is local
    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path.startswith("/api/whoami") and self.headers.get("authorization") == "Bearer hf_good"
            body = json.dumps({"name": "me", "type": "user"} if ok else {"error": "Invalid credentials"}).encode()
            self.send_response(200 if ok else 401); self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
        def log_message(self, *args): pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hub = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert _hub_repo("me/model", {}, env={"HF_TOKEN": "hf_good", "HF_ENDPOINT": hub}) is None
        assert "the Hub refused HF_TOKEN" in _hub_repo("me/model", {}, env={"HF_TOKEN": "hf_bad", "HF_ENDPOINT": hub})
    finally: server.shutdown(); server.server_close()
    assert "could not be reached" in _hub_repo("me/model", {}, env={"HF_TOKEN": "hf_good", "HF_ENDPOINT": hub})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE is set" in _hub_repo("me/model", {}, env={"HF_TOKEN": "hf_good"})
