"""The pipeline on a small folder of the user's own documents: once as a batch user runs it (`embedtune run`, papermill
underneath, the executed notebook kept), then step by step through `Run`, with the local model's replies replayed
from `tests/replies/pipeline.jsonl` (EMBEDTUNE_REPLAY=record records missing ones with the live model)."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
from stubs import StubOpenAI, serve_openai
from embedtune.params import LIGHT

ROOT = Path(__file__).resolve().parents[1]
REPLIES = str(ROOT/"tests"/"replies"/"pipeline.jsonl")
VIBE = ["What does a retriever return?"]
# Real queries about nbs/files, labelled by hand with the file that answers them (as the pipeline's eval_queries)
REAL = [("how much memory does a laptop need for a seven billion parameter model", "local-models.html"),
        ("why quantise weights to four bits", "local-models.html"),
        ("does running two requests at once on one local model help", "local-models.html"),
        ("how fast does MiniLM encode passages on a CPU", "local-models.html"),
        ("why do small models break the numbered list format", "local-models.html"),
        ("what does RAG do when the answer is not in the passages", "retrieval-year.html"),
        ("why add overlap between chunks", "retrieval-year.html"),
        ("are long chunks bad for embeddings", "retrieval-year.html"),
        ("is retrieval or generation to blame for wrong answers", "retrieval-year.html"),
        ("why are scores on synthetic test questions optimistic", "retrieval-year.html"),
        ("cut a 384 dimensional vector to 64 dimensions", "sample.md"),
        ("how is the matryoshka loss computed at several sizes", "sample.md"),
        ("what does matryoshka representation learning do", "sample.md"),
        ("smaller embeddings for a faster index", "sample.md"),
        ("what does fine-tuning do to a question and its passage", "sample.pdf"),
        ("what do embedding models turn text into", "sample.pdf"),
        ("what does a retriever give back for a query", "sample.pdf"),
        ("which passages are negatives in multiple negatives ranking loss", "sample.txt"),
        ("why are bigger batches better for contrastive loss", "sample.txt"),
        ("duplicate passages in a batch become false negatives", "sample.txt")]
TINY = dict(sources=[str(ROOT/"nbs"/"files")], chunk_size=300, max_train_chunks=8, max_eval_chunks=2, n_questions=2, epochs=1,
            batch_size=4, eval_corpus="split", rag_k=2, rag_questions=2, vibe_questions=VIBE,
            **LIGHT)  # the small writer its replies were recorded with; no teacher but where a test asks


def write_queries(path, rows):
    path.write_text("".join(json.dumps({"query": q, "relevant": [r]}) + "\n" for q, r in rows))
    return str(path)


@pytest.fixture
def replayed(monkeypatch):
    monkeypatch.setenv("EMBEDTUNE_REPLIES", REPLIES)


def test_embedtune_run_end_to_end(tmp_path, replayed, monkeypatch):
    "`embedtune run` as a batch user calls it, with an OpenAI key in the environment that an offline run must not use."
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-never-written")
    out = tmp_path/"a"
    args = [str(Path(sys.executable).parent/"embedtune"), "run", "--out", str(out), "-p", "cache_dir", str(tmp_path/"cache"),
            "-p", "eval_queries", write_queries(tmp_path/"real.jsonl", REAL)]
    for k, v in TINY.items(): args += ["-y", f"{k}: {json.dumps(v)}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    m = json.loads((out/"metrics.json").read_text())
    assert json.loads((out/"params.json").read_text())["chunk_size"] == 300 and (out/"finetune.ipynb").exists()
    asked = {"train": 8, "val": 0, "test": 2}  # validated on the real queries: no synthetic validation questions
    for split in ("train", "val", "test"):
        ds = json.loads((out/f"{split}_dataset.json").read_text())
        assert set(ds) == {"questions", "relevant_contexts", "corpus"} and ds["corpus"]
        assert len({c for cs in ds["relevant_contexts"].values() for c in cs}) <= asked[split] == m["datasets"][split]["chunks asked"]
        d = m["datasets"][split]  # two questions asked per chunk; the filter's drops, counted by reason, make the difference
        assert d["questions"] == d["questions written"] - sum(m["question_filter"][split].values()) and d["questions written"] <= 2 * asked[split]
    ids = [set(json.loads((out/f"{s}_dataset.json").read_text())["corpus"]) for s in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert (out/"model"/"README.md").exists() and (out/"retrieval.png").stat().st_size > 0 and (out/"ragas.png").stat().st_size > 0
    t = m["training"]  # by default the seed's recipe: every question, plain pairs, MultipleNegativesRankingLoss
    assert t["dims"] == [384, 256, 128, 64] and (t["negatives"], t["loss"], t["round_trip_dropped"]) == (False, "MultipleNegativesRankingLoss", 0)
    assert t["train_pairs"] == m["datasets"]["train"]["questions"]
    assert list(m["retrieval"]) == ["base", "fine-tuned", "fine-tuned @256", "fine-tuned @128", "fine-tuned @64",
                                    "BM25", "base + BM25", "fine-tuned + BM25"]  # no OpenAI row: the key asked for nothing
    assert all(0 <= r["ndcg@10"] <= 1 for r in m["retrieval"].values())
    assert list(m["real_queries"]) == ["base", "fine-tuned", "BM25", "base + BM25", "fine-tuned + BM25"]
    v, use = m["verdict"], m["verdict"]["use"]
    assert (v["judged_on"], v["queries"], v["metric"]) == ("the labelled real queries", 20, "ndcg@10")
    assert m["recommended"]["retriever"] == use and m["recommended"]["scores"]["ndcg@10"] == v["means"][use]
    assert v["means"][use] >= max(s for r, s in v["means"].items() if "fine-tuned" not in r and r.endswith(" + BM25"))  # needs no proof
    assert v["means"]["BM25"] == round(m["real_queries"]["BM25"]["ndcg@10"], 4) and (out/"real_queries.png").exists()
    # the retriever handed over, loaded in a new process, ranks the real queries as the run's own evaluation did
    queries = {f"real-{n}": q for n, (q, _) in enumerate(REAL, 1)}
    code = ("import json, sys; from embedtune import load_retriever; r = load_retriever(sys.argv[1], k=10); "
            "print(json.dumps({q: [i for i, _ in r.search(text)] for q, text in json.loads(sys.argv[2]).items()}))")
    loaded = subprocess.run([sys.executable, "-c", code, str(out/"retriever"), json.dumps(queries)], capture_output=True, text=True, check=True)
    assert json.loads(loaded.stdout) == json.loads((out/"rankings.json").read_text())["real queries"][use]
    # the "Use your retriever" page: that folder in an LCEL chain, run as papermill runs it
    import papermill as pm
    used = pm.execute_notebook(str(ROOT/"nbs"/"pipelines"/"use_retriever.ipynb"), str(tmp_path/"use.ipynb"), progress_bar=False,
                               parameters={"retriever": str(out/"retriever"), "questions": VIBE, "k": 2})
    shown = json.dumps(used["cells"][-1]["outputs"])
    assert "What does a retriever return?" in shown and "answer" in shown
    assert t["val_before"]["eval_val_cosine_ndcg@10"] == pytest.approx(m["real_queries"]["base"]["ndcg@10"], abs=1e-4)
    chains = ["base"] + ([use] if use != "base" else [])  # the base model's dense retriever against the one handed over
    assert [row["question"] for row in m["vibe_check"]] == VIBE and all(row[c] for row in m["vibe_check"] for c in chains)
    assert (m["rag"]["mode"], m["rag"]["k"], m["rag"]["questions"], list(m["rag"]["ragas"])) == ("offline", 2, 2, chains)
    assert set(m["timings"]) == {"chunk_s", "questions_s", "train_s", "evaluate_s", "hand_over_s", "vibe_check_s", "ragas_s"} and m["peak_memory_gb"] > 0
    assert "Writing questions" in r.stderr and "Training" in r.stderr  # live progress on the terminal
    for f in out.rglob("*"):  # the key in the environment is written nowhere
        if f.is_file() and f.stat().st_size < 5e6: assert b"sk-test-SECRET" not in f.read_bytes(), f


@pytest.mark.slow
def test_every_training_option_through_an_openai_compatible_server(tmp_path, monkeypatch):
    "Round trip, hard negatives, guided loss, chunks as long as the model reads, another base model; questions from a vLLM-like server."
    from sentence_transformers import SentenceTransformer
    from embedtune.core import base_model_path
    from embedtune.retriever import load_retriever
    from embedtune.run import Run
    other = SentenceTransformer(base_model_path())
    other.max_seq_length = 128  # another model, as far as the run can tell: its vectors differ
    other.save(str(tmp_path/"other-model"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-for-openai-only")
    monkeypatch.setenv("MY_SERVER_KEY", "server-key-123")
    stub = StubOpenAI()
    with serve_openai(stub) as url:
        run = Run({**TINY, "rag": False, "round_trip_k": 20, "hard_negatives": True, "guided_loss": True, "llm": "my-vllm-model",
                   "llm_base_url": url, "llm_api_key_env": "MY_SERVER_KEY", "llm_concurrency": 32, "chunk_size": 0,
                   "query_examples": ["What does a retriever return?", "Why chunk documents?"], "compare_base_models": [str(tmp_path/"other-model")],
                   "out_dir": str(tmp_path/"c"), "cache_dir": str(tmp_path/"cache")}, verbose=False).all()
    m = run.metrics
    assert m["chunking"] == {"chunk_size": 254, "unit": "tokens"}
    t = m["training"]
    assert (t["negatives"], t["loss"]) == (True, "FrozenGuideLoss") and m["datasets"]["train"]["questions"] == 16
    assert 0 < t["train_pairs"] <= 16 - t["round_trip_dropped"] and m["datasets"]["train"]["requests"] == 8
    calls = sum(m["datasets"][split]["requests"] for split in ("train", "val", "test"))
    assert len(stub.requests) == calls > 8 and {r["model"] for r in stub.requests} == {"my-vllm-model"}
    assert "- Why chunk documents?" in stub.requests[0]["messages"][0]["content"]
    assert {h["authorization"] for h in stub.headers} == {"Bearer server-key-123"}  # the named key, never OPENAI_API_KEY
    assert {"other-model", "other-model + BM25"} <= set(m["retrieval"]) and {"other-model", "other-model + BM25"} <= set(m["verdict"]["means"])
    assert "vibe_check" not in m and "rag" not in m and run.done == ["chunk", "questions", "train", "evaluate", "decide", "hand_over"]
    peaks = list(m["peak_memory_gb_after"].values())  # after each step: what bench/scale.py reads
    assert list(m["peak_memory_gb_after"]) == [k[:-2] for k in m["timings"]] and peaks == sorted(peaks), (m["peak_memory_gb_after"], m["timings"])
    handed = load_retriever(tmp_path/"c"/"retriever")  # whichever won, it answers
    assert handed.metadata["embedtune_retriever"] == m["verdict"]["use"] and len(handed.search("Why chunk documents?", 3)) == 3


def test_a_second_run_pays_only_for_new_chunks(tmp_path, replayed):
    from embedtune.run import Run
    first = Run({**TINY, "out_dir": str(tmp_path/"a"), "cache_dir": str(tmp_path/"cache")}, verbose=False)
    first.write_questions()
    second = Run({**TINY, "max_train_chunks": 10, "out_dir": str(tmp_path/"b"), "cache_dir": str(tmp_path/"cache")}, verbose=False)
    second.write_questions()
    d = second.metrics["datasets"]["train"]
    assert (d["cached replies"], d["requests"]) == (16, 2)  # 8 chunks x 2 questions from the cache, 2 new chunks asked
    assert second.real is None and "verdict" not in second.metrics


def test_a_teacher_trains_the_base_model_on_its_margins(tmp_path, replayed):
    "`teacher` (here the packaged MiniLM as a small stand-in for mpnet) with BM25, and `wise` 0.5: MarginMSELoss on mined triplets."
    from embedtune.run import Run
    run = Run({**TINY, "teacher": "minilm", "wise": 0.5, "out_dir": str(tmp_path/"a"), "cache_dir": str(tmp_path/"cache")}, verbose=False)
    run.evaluate()
    t, m = run.metrics["training"], run.metrics
    assert (t["loss"], t["negatives"], t["wise"], t["dims"]) == ("MarginMSELoss", True, 0.5, [384])
    assert 0 < t["train_pairs"] <= m["datasets"]["train"]["questions"] and t["val_after"]
    assert list(m["retrieval"]) == ["base", "fine-tuned", "BM25", "base + BM25", "fine-tuned + BM25"]  # one size: no Matryoshka rows
    assert json.loads((tmp_path/"a"/"params.json").read_text())["teacher"] == "minilm"


def test_bad_eval_queries_stop_the_run_before_any_question(tmp_path, replayed):
    from embedtune.run import Run
    rows = [json.dumps({"query": q, "relevant": [r]}) for q, r in REAL]
    rows[2] = json.dumps({"query": "what is in the appendix", "relevant": ["appendix.md"]})
    (tmp_path/"real.jsonl").write_text("\n".join(rows) + "\n")
    run = Run({**TINY, "eval_queries": str(tmp_path/"real.jsonl"), "out_dir": str(tmp_path/"a"), "cache_dir": str(tmp_path/"cache")}, verbose=False)
    with pytest.raises(ValueError, match=r"line 3: \['appendix.md'\] match no loaded source"):
        run.write_questions()  # chunking comes first, and reads the queries
    assert not (tmp_path/"a"/"train_dataset.json").exists() and not (tmp_path/"cache").exists()  # no question was asked
    assert json.loads((tmp_path/"a"/"metrics.json").read_text())["failed"]["step"] == "chunk"
