"""The online path against a real OpenAI-compatible server: llama-cpp-python's own (`llama_cpp.server`) serving the
offline 0.5B on 127.0.0.1, started and stopped here. Like vLLM, llama.cpp's server and OpenAI, it keeps connections
alive; it serves the chat model as "qwen" and the same file in embedding mode as "qwen-embed" (one loaded at a time).

Needs llama-cpp-python's `[server]` extra (`make install` installs it). Without it these tests skip with that advice,
except under `CI=true`, where they must run."""
import json, os, subprocess, sys, time, urllib.request
import pytest
from stubs import free_port, in_ci

pytestmark = pytest.mark.slow  # a real server with the live model: CI runs these, make test with EMBEDTUNE_SLOW=1

SERVER_EXTRA = "pip install 'llama-cpp-python[server]' (make install does)"


# `python -m llama_cpp.server`, except that an embedding model averages its token vectors into one per text, as
# llama.cpp's own llama-server does with `--pooling mean` (the Python server has no such option; a chat model's GGUF
# names no pooling, so it would answer with a vector per token)
SERVE = """
import functools, sys, llama_cpp
init = llama_cpp.Llama.__init__
@functools.wraps(init)
def pooled(self, *args, **kwargs):
    if kwargs.get("embedding"): kwargs.setdefault("pooling_type", llama_cpp.LLAMA_POOLING_TYPE_MEAN)
    init(self, *args, **kwargs)
llama_cpp.Llama.__init__ = pooled
from llama_cpp.server.__main__ import main
sys.argv[0] = "llama_cpp.server"
main()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    "The base URL (…/v1) of a llama_cpp.server on a free port, for this module's tests."
    try: import llama_cpp.server.app  # noqa: F401
    except ImportError as e:
        if in_ci(): pytest.fail(f"llama_cpp.server cannot be imported ({e}); under CI these tests must run: {SERVER_EXTRA}")
        pytest.skip(f"llama_cpp.server is not installed: {SERVER_EXTRA}")
    from embedtune.llm import gguf_path
    model, port, tmp = str(gguf_path()), free_port(), tmp_path_factory.mktemp("server")
    config = {"host": "127.0.0.1", "port": port, "models": [
        {"model": model, "model_alias": "qwen", "n_ctx": 2048, "n_threads": 2, "verbose": False},
        {"model": model, "model_alias": "qwen-embed", "embedding": True, "n_ctx": 512, "n_threads": 2, "verbose": False}]}
    (tmp/"config.json").write_text(json.dumps(config))
    log = open(tmp/"server.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", SERVE, "--config_file", str(tmp/"config.json")],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            try:
                models = json.load(urllib.request.urlopen(f"{url}/models", timeout=2))
                break
            except OSError:
                if proc.poll() is not None: pytest.fail(f"llama_cpp.server exited {proc.returncode}: {(tmp/'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else: pytest.fail("llama_cpp.server did not answer within 120 s")
        assert {m["id"] for m in models["data"]} >= {"qwen", "qwen-embed"}, models
        yield url
    finally:
        proc.terminate()
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()


@pytest.fixture(scope="module")
def chunks():
    from embedtune.chunk import chunk_documents
    from embedtune.load import load_documents
    files = os.path.join(os.path.dirname(__file__), "..", "nbs", "files")
    return chunk_documents(load_documents([os.path.join(files, "sample.txt"), os.path.join(files, "sample.md")]), 300)


def test_questions_are_written_through_llm_base_url(server, chunks, tmp_path):
    "Questions written by the server, over kept-alive connections, two at a time, cached: a second run asks nothing."
    from embedtune.llm import chat_model
    from embedtune.questions import QuestionCache, generate_questions
    writer, cache = chat_model("qwen", base_url=server, max_retries=0), QuestionCache(tmp_path/"replies.sqlite")
    first = generate_questions(chunks[:4], writer, 2, cache=cache, concurrency=2, progress=False)
    asked = [q for qs in first.questions.values() for q in qs]
    assert len(first.questions) == 4 and len(asked) >= 4, first
    assert all(q.endswith("?") for q in asked), asked
    again = generate_questions(chunks[:4], writer, 2, cache=cache, concurrency=2, progress=False)
    assert again.questions == first.questions and again.n_called == 0, again


def test_rag_answers_and_llm_judged_ragas_through_llm_base_url(server, chunks):
    "A RAG chain answering with the server's model, judged by RAGAS's LLM metrics through the same server."
    from ragas import EvaluationDataset, SingleTurnSample
    from ragas.metrics import Faithfulness
    from embedtune.evaluate import make_retriever
    from embedtune.llm import chat_model
    from embedtune.rag import answer_all, rag_chain
    from embedtune.ragas import openai_judge, score
    chain = rag_chain(make_retriever(chunks, "bm25", k=2), chat_model("qwen", base_url=server, max_tokens=64))
    questions = ["What is this text about?", "Which words does the text use first?"]
    outs = answer_all(chain, questions, max_concurrency=2)
    assert [bool(o["response"].strip()) for o in outs] == [True, True], outs
    judge, emb = openai_judge("qwen", "qwen-embed", base_url=server, max_tokens=512)
    testset = EvaluationDataset(samples=[SingleTurnSample(user_input=q, response=o["response"],
                                                          retrieved_contexts=[d.page_content for d in o["context"]])
                                         for q, o in zip(questions, outs)])
    result = score(testset, [Faithfulness()], llm=judge, embeddings=emb).to_pandas()
    assert "faithfulness" in result.columns and len(result) == 2, result.columns
    assert result["faithfulness"].notna().any(), result  # the 0.5B judge parsed at least once: the path works


def test_embedding_comparison_through_an_embeddings_endpoint(server, chunks):
    "The OpenAI embedding row, pointed at the server's embeddings endpoint: no tiktoken download, real vectors, a ranking."
    from embedtune.evaluate import compare_retrievers, hf_embeddings, openai_embeddings
    emb = openai_embeddings("qwen-embed", base_url=server, api_key="unused")
    assert emb.check_embedding_ctx_length is False  # tiktoken would download OpenAI's tables: offline, it must not
    vecs = emb.embed_documents([c.page_content for c in chunks[:3]])
    assert len(vecs) == 3 and len(vecs[0]) > 100 and vecs[0] != vecs[1]
    ids = [c.metadata["id"] for c in chunks]
    ds = {"questions": {"q1": chunks[0].page_content[:80], "q2": chunks[1].page_content[:80]},
          "relevant_contexts": {"q1": [ids[0]], "q2": [ids[1]]}, "corpus": {i: c.page_content for i, c in zip(ids, chunks)}}
    scores = compare_retrievers(ds, {"base": hf_embeddings(), "server": emb}, bm25=False)
    assert list(scores.index) == ["base", "server"]
    assert 0 <= scores.loc["server", "ndcg@10"] <= 1 and scores.loc["server", "hit_rate@10"] > 0, scores
