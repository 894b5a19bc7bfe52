"""The pipeline notebook run by papermill with tiny parameters on a small folder of the user's own documents."""
import json, subprocess, sys
from pathlib import Path
import pytest
from stubs import StubOpenAI, serve_openai

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


def write_queries(path, rows):
    path.write_text("".join(json.dumps({"query": q, "relevant": [r]}) + "\n" for q, r in rows))
    return str(path)


@pytest.fixture(scope="module")
def tiny(root):
    return dict(sources=[str(root/"nbs"/"files")], chunk_size=300, max_train_chunks=8, max_eval_chunks=2, n_questions=2,
                epochs=1, batch_size=4, eval_corpus="split", rag_k=2, rag_questions=2, ragas_mode="offline", vibe_questions=VIBE)


def run_pipeline(root, out, cache, **params):
    "papermill the pipeline into `out` (parameters as YAML, so lists work); returns its metrics.json."
    out.mkdir(parents=True)
    args = [str(Path(sys.executable).parent/"papermill"), str(root/"nbs/pipelines/finetune.ipynb"), str(out/"finetune.ipynb")]
    for k, v in {**params, "out_dir": str(out), "cache_dir": str(cache)}.items(): args += ["-y", f"{k}: {json.dumps(v)}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads((out/"metrics.json").read_text())


def test_pipeline_end_to_end(root, tmp_path, tiny):
    m = run_pipeline(root, tmp_path/"a", tmp_path/"cache", **tiny, eval_queries=write_queries(tmp_path/"real.jsonl", REAL))
    out = tmp_path/"a"
    assert json.loads((out/"params.json").read_text())["chunk_size"] == 300
    asked = {"train": 8, "val": 2, "test": 2}
    for split in ("train", "val", "test"):
        ds = json.loads((out/f"{split}_dataset.json").read_text())
        assert set(ds) == {"questions", "relevant_contexts", "corpus"}
        assert 0 < len({c for cs in ds["relevant_contexts"].values() for c in cs}) <= asked[split] == m["datasets"][split]["requests"]
        d = m["datasets"][split]  # two questions asked per chunk; the filter's drops, counted by reason, make the difference
        assert d["questions"] == d["questions written"] - sum(m["question_filter"][split].values()) and d["questions written"] <= 2 * asked[split]
        assert all(cs[0] in ds["corpus"] for cs in ds["relevant_contexts"].values())
    ids = [set(json.loads((out/f"{s}_dataset.json").read_text())["corpus"]) for s in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    # the model with its card, the retrieval table with a row per Matryoshka size, and the RAG comparison
    assert (out/"model"/"README.md").exists() and (out/"retrieval.png").stat().st_size > 0 and (out/"ragas.png").stat().st_size > 0
    t = m["training"]  # by default the seed's recipe: every question, plain pairs, MultipleNegativesRankingLoss
    assert t["dims"] == [384, 256, 128, 64] and (t["negatives"], t["loss"], t["round_trip_dropped"]) == (False, "MultipleNegativesRankingLoss", 0)
    assert t["train_pairs"] == m["datasets"]["train"]["questions"] and m["recommended"] in ("base", "fine-tuned")
    assert list(m["retrieval"]) == ["base", "fine-tuned", "fine-tuned @256", "fine-tuned @128", "fine-tuned @64",
                                    "BM25", "base + BM25", "fine-tuned + BM25"]
    assert all(0 <= r["ndcg@10"] <= 1 and 0 <= r["hit_rate@5"] <= 1 for r in m["retrieval"].values())
    # the real queries validate training and judge the models, over every chunk; the verdict follows its interval
    assert list(m["real_queries"]) == ["base", "fine-tuned", "BM25", "base + BM25", "fine-tuned + BM25"]
    v = m["verdict"]
    assert (v["judged_on"], v["queries"], v["metric"]) == ("the labelled real queries", 20, "ndcg@10")
    assert m["recommended"] == v["use"] == ("fine-tuned" if v["ci95"][0] > 0 else "base")
    assert v["means"]["BM25"] == round(m["real_queries"]["BM25"]["ndcg@10"], 4) and (out/"real_queries.png").exists()
    assert t["val_before"]["eval_val_cosine_ndcg@10"] == pytest.approx(m["real_queries"]["base"]["ndcg@10"], abs=1e-4)
    assert m["peak_memory_gb"] > 0
    assert [row["question"] for row in m["vibe_check"]] == VIBE and all(row["base"] and row["fine-tuned"] for row in m["vibe_check"])
    assert (m["rag"]["mode"], m["rag"]["k"], m["rag"]["questions"], list(m["rag"]["ragas"])) == ("offline", 2, 2, ["base", "fine-tuned"])
    assert {"id_based_context_recall", "id_based_context_precision"} <= set(m["rag"]["ragas"]["base"])

    # A second run with other parameters: no edit to the notebook, and the shared cache answers what it already knows.
    m2 = run_pipeline(root, tmp_path/"b", tmp_path/"cache", **{**tiny, "max_train_chunks": 10, "epochs": 2, "rag": False})
    assert (m2["datasets"]["train"]["cached replies"], m2["datasets"]["train"]["requests"]) == (16, 2)
    assert m2["training"]["epochs"] == 2 and "rag" not in m2
    assert m2["verdict"]["judged_on"] == "the synthetic test questions" and "real_queries" not in m2
    # every training option on (round trip, hard negatives, guided loss), chunks as long as the model reads, and the
    # questions from an OpenAI-compatible server (a stand-in for vLLM) with many requests at once, in the users' style
    stub = StubOpenAI()
    with serve_openai(stub) as url:
        m3 = run_pipeline(root, tmp_path/"c", tmp_path/"cache", **{**tiny, "rag": False, "round_trip_k": 20, "hard_negatives": True,
                          "guided_loss": True, "llm": "my-vllm-model", "llm_base_url": url, "llm_concurrency": 32,
                          "query_examples": ["What does a retriever return?", "Why chunk documents?"], "chunk_size": 0})
    assert m3["chunking"] == {"chunk_size": 254, "unit": "tokens"} and m["chunking"] == {"chunk_size": 300, "unit": "characters"}
    t3 = m3["training"]
    assert (t3["negatives"], t3["loss"]) == (True, "GISTEmbedLoss") and m3["datasets"]["train"]["questions"] == 16
    assert 0 < t3["train_pairs"] <= 16 - t3["round_trip_dropped"] and m3["datasets"]["train"]["requests"] == 8
    calls = sum(m3["datasets"][split]["requests"] for split in ("train", "val", "test"))
    assert len(stub.requests) == calls > 8 and {r["model"] for r in stub.requests} == {"my-vllm-model"}
    assert "- Why chunk documents?" in stub.requests[0]["messages"][0]["content"]


def test_pipeline_refuses_bad_eval_queries_before_writing(root, tmp_path, tiny):
    rows = [json.dumps({"query": q, "relevant": [r]}) for q, r in REAL]
    rows[2] = json.dumps({"query": "what is in the appendix", "relevant": ["appendix.md"]})
    (tmp_path/"real.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(AssertionError, match=r"line 3: \['appendix.md'\] match no loaded source"):
        run_pipeline(root, tmp_path/"a", tmp_path/"cache", **tiny, eval_queries=str(tmp_path/"real.jsonl"))
    assert not (tmp_path/"a"/"train_dataset.json").exists() and not (tmp_path/"cache").exists()  # no question was asked
