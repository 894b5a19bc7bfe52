"""Question generation through a real OpenAI client against a local stand-in server: retries, resume, parsing, samples."""
import pytest
from langchain_openai import ChatOpenAI
from embedtune.chunk import chunk_documents
from embedtune.load import demo_corpus
from embedtune.questions import QUESTION_PROMPT, QuestionCache, generate_questions, model_id, prompt_text
from stubs import StubOpenAI, serve_openai


@pytest.fixture(scope="module")
def chunks(): return chunk_documents(demo_corpus(["assert", "pass", "del", "global"]))[:6]


def client(url): return ChatOpenAI(model="gpt-4o-mini", base_url=url, api_key="test", max_retries=0)


def test_transient_errors_are_retried(chunks, tmp_path):
    stub = StubOpenAI(statuses=[503, 429])
    with serve_openai(stub) as url:
        gen = generate_questions(chunks[:1], client(url), 2, per_call=2, cache=QuestionCache(tmp_path/"c.sqlite"), backoff=0.01, progress=False)
    assert len(stub.requests) == 3 and gen.n_called == 1
    [qs] = gen.questions.values()
    assert len(qs) == 2 and qs[1].endswith("e.g. in 3.11?")  # the preamble is dropped, "3.11" survives


def test_interrupted_run_resumes_without_repeating_calls(chunks, tmp_path):
    cache = QuestionCache(tmp_path/"c.sqlite")
    with serve_openai(StubOpenAI(fail_after=3)) as url:  # the key "expires" after three answers
        with pytest.raises(RuntimeError, match="rerun to resume"):
            generate_questions(chunks, client(url), 2, cache=cache, concurrency=1, progress=False)
    assert len(cache) == 6  # three chunks answered, two sampled questions each
    stub = StubOpenAI()
    with serve_openai(stub) as url:
        gen = generate_questions(chunks, client(url), 2, cache=cache, progress=False)
    assert (gen.n_cached, gen.n_called, gen.n_replies, len(stub.requests)) == (6, 3, 6, 3)
    assert all(r["n"] == 2 and r["stop"] == ["\n"] for r in stub.requests)  # one request per chunk, one line per reply
    assert list(gen.questions) == [c.metadata["id"] for c in chunks]  # chunk order, whatever the completion order


def test_unparseable_reply_is_recorded_not_fatal(chunks, tmp_path):
    cache, mid = QuestionCache(tmp_path/"c.sqlite"), model_id(client("http://127.0.0.1:9/v1"))
    cache.put(cache.key(mid, prompt_text(QUESTION_PROMPT), chunks[0].page_content, 1, 0.7, "", 0), mid, "\n \n")  # a blank reply
    with serve_openai(StubOpenAI()) as url:
        with pytest.warns(UserWarning, match="1 of 2 chunk"):
            gen = generate_questions(chunks[:2], client(url), 1, cache=cache, progress=False)
    assert list(gen.failures) == [chunks[0].metadata["id"]] and len(gen.questions) == 1


def test_live_local_model_smoke(chunks, local_llm, tmp_path):
    "The one test of the live local model here: two sampled one-line questions per chunk from one request (form, not text)."
    gen = generate_questions(chunks[:1], local_llm, 2, cache=QuestionCache(tmp_path/"c.sqlite"), progress=False)
    assert gen.n_called == 1 and gen.n_replies == 2 and not gen.failures
    assert all(q.strip() == q and "\n" not in q for qs in gen.questions.values() for q in qs)


def test_example_queries_set_the_style_and_the_cache_key(chunks, tmp_path):
    "Promptagator-style: the user's real queries reach the model (and high concurrency goes to an OpenAI-compatible server)."
    claims = ["Aspirin lowers the risk of a second stroke.", "Vitamin D has no effect on bone density."]
    cache, stub = QuestionCache(tmp_path/"c.sqlite"), StubOpenAI()
    with serve_openai(stub) as url:
        gen = generate_questions(chunks[:3], client(url), 2, examples=claims, cache=cache, concurrency=16, progress=False)
        again = generate_questions(chunks[:3], client(url), 2, cache=cache, progress=False)  # no examples: another prompt
    assert gen.n_called == 3 and again.n_called == 3 and len(cache) == 12
    system = [m for m in stub.requests[0]["messages"] if m["role"] == "system"][0]["content"]
    assert all(f"- {c}" in system for c in claims) and "same style" in system
    assert "Aspirin" not in str(stub.requests[-1]["messages"])


def test_servers_that_keep_connections_alive(chunks, tmp_path):
    "vLLM, llama.cpp's server and OpenAI keep connections open: one client, many runs, no 'Connection error'."
    stub = StubOpenAI()
    with serve_openai(stub, keep_alive=True) as url:
        llm = client(url)
        gens = [generate_questions(chunks[i:i + 2], llm, 2, cache=False, progress=False) for i in (0, 2, 4)]
    assert [len(g.questions) for g in gens] == [2, 2, 2] and len(stub.requests) == 6


def test_servers_that_ignore_n_are_asked_again(chunks, monkeypatch):
    "A server that returns one choice whatever `n` says (some do) still gives every question, each from its own seed."
    stub = StubOpenAI()
    reply = stub.reply
    def one_choice(body):
        status, payload = reply(body)
        if status == 200: payload["choices"] = payload["choices"][:1]
        return status, payload
    monkeypatch.setattr(stub, "reply", one_choice)
    with serve_openai(stub) as url:
        gen = generate_questions(chunks[:1], client(url), 3, cache=False, progress=False)
    assert [r.get("seed") for r in stub.requests] == [0, 1, 2] and [r.get("n") for r in stub.requests] == [3, 2, None]
    [qs] = gen.questions.values()
    assert len(qs) == 3 and gen.n_called == 3
