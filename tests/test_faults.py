"""Reliability faults, each with a small stand-in (no LLM, no model files): text encodings, interrupted model assembly,
API keys sent only where they belong, retried connection faults, a corrupt question cache, refusals as questions, a stalled
or failing server and a writer that gives nothing usable, each named."""
import codecs, hashlib, os, signal, sqlite3, subprocess, sys, threading, warnings
import pytest
from langchain_core.documents import Document
from stubs import StubOpenAI, serve_openai

TEXT = "Héllo wörld: the assert statement checks a condition.\n\nA second paragraph, with → arrows and “quotes”."


# 1. Text files in UTF-16 (with or without a BOM) and UTF-8 with a BOM

def _write(path, text, how):
    "Write `text` to `path` as Python would for encoding `how` ('utf-16-be-bom': a big-endian BOM, then big-endian text)."
    if how == "utf-16-be-bom": path.write_bytes(codecs.BOM_UTF16_BE + text.encode("utf-16-be"))
    else: path.write_text(text, encoding=how)
    return path


@pytest.mark.parametrize("how", ["utf-16", "utf-16-be-bom", "utf-8-sig", "utf-16-le", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("suffix", [".txt", ".md"])
def test_utf16_and_bom_text_files_load(tmp_path, how, suffix):
    from embedtune.load import load_file
    [doc] = load_file(_write(tmp_path/f"notes{suffix}", TEXT, how))
    assert doc.page_content == TEXT and "\ufeff" not in doc.page_content


@pytest.mark.parametrize("how", ["utf-16", "utf-16-be-bom", "utf-8-sig", "utf-16-le"])
def test_utf16_html_loads(tmp_path, how):
    from embedtune.load import load_file
    html = f"<html><head><title>Wörds</title></head><body><p>{TEXT}</p></body></html>"
    [doc] = load_file(_write(tmp_path/"page.html", html, how))
    assert doc.metadata["title"] == "Wörds" and "assert statement" in doc.page_content and "→" in doc.page_content


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", bytes(range(256)) * 4,
                                  codecs.BOM_UTF16_LE + b"\x00\x00\x00\x00\x01\x02" * 50,  # a BOM, then zeros
                                  b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 40])
def test_binary_files_are_still_refused(tmp_path, data):
    from embedtune.load import load_file
    (tmp_path/"blob.md").write_bytes(data)
    with pytest.raises(ValueError, match="looks binary"): load_file(tmp_path/"blob.md")


# 2. gguf_path: no orphan part files

@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    "A fake three-part model in GGUF_MODELS, its parts small files, the cache in `tmp_path/cache`."
    from embedtune import llm
    monkeypatch.setenv("EMBEDTUNE_CACHE", str(tmp_path/"cache"))
    parts = [tmp_path/f"part{i}" for i in range(3)]
    for i, p in enumerate(parts): p.write_bytes(bytes([i + 1]) * 5000)
    data = b"".join(p.read_bytes() for p in parts)
    monkeypatch.setitem(llm.GGUF_MODELS, "tiny", dict(file="tiny.gguf", size=len(data), modules=["m1", "m2", "m3"], install="make tiny",
                                                      sha256=hashlib.sha256(data).hexdigest()))
    monkeypatch.setattr(llm, "_part_paths", lambda modules, install: list(parts))
    return parts, data, tmp_path/"cache"/"models"


def _dead_pid() -> int:
    "The pid of a process that has ended."
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_ctrl_c_while_joining_leaves_no_part_file(tiny_model):
    "A real Ctrl-C (SIGINT) while a part blocks (a FIFO nobody writes to): the half-written part file goes."
    from embedtune.llm import gguf_path
    parts, _, models = tiny_model
    parts[1].unlink(); os.mkfifo(parts[1])
    def unblock():  # should the interrupt not arrive: end the read instead of hanging the test
        try: os.close(os.open(parts[1], os.O_WRONLY | os.O_NONBLOCK))
        except OSError: pass
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    ctrl_c = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    safety = threading.Timer(10, unblock)
    try:
        ctrl_c.start(); safety.start()
        with pytest.raises(KeyboardInterrupt): gguf_path("tiny")
    finally:
        ctrl_c.cancel(); safety.cancel(); signal.signal(signal.SIGINT, previous)
    assert list(models.iterdir()) == []


def test_error_while_joining_leaves_no_part_file(tiny_model):
    from embedtune.llm import gguf_path
    parts, _, models = tiny_model
    parts[2].unlink()  # a part package half uninstalled
    with pytest.raises(FileNotFoundError): gguf_path("tiny")
    assert list(models.iterdir()) == []


def test_stale_part_files_of_ended_processes_are_removed(tiny_model):
    from embedtune.llm import gguf_path
    _, data, models = tiny_model
    models.mkdir(parents=True)
    stale, live = models/f"tiny.gguf.{_dead_pid()}.part", models/f"tiny.gguf.{os.getppid()}.part"
    for p in (stale, live): p.write_bytes(b"half")
    assert gguf_path("tiny").read_bytes() == data
    assert not stale.exists() and live.exists()  # a running process's part is its own business
    again = models/f"tiny.gguf.{_dead_pid()}.part"
    again.write_bytes(b"half")
    gguf_path("tiny")  # the model is there already: stale parts still go
    assert not again.exists() and sorted(p.name for p in models.iterdir()) == sorted(["tiny.gguf", live.name])


# 3. OPENAI_API_KEY only to OpenAI

SECRET = "sk-test-SECRET"


def _auth(stub) -> list[str]: return [h.get("authorization", "") for h in stub.headers]


def test_openai_key_is_not_sent_to_another_server(monkeypatch):
    from embedtune.llm import chat_model, openai_chat_model
    from embedtune.evaluate import openai_embeddings
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    stub = StubOpenAI()
    with serve_openai(stub) as url:
        openai_chat_model("gpt-4o-mini", base_url=url, max_retries=0).invoke("hi")
        chat_model("gpt-4o-mini", base_url=url, api_key=None, max_retries=0).invoke("hi")  # as the pipeline passes no key
        openai_embeddings(base_url=url, max_retries=0).embed_documents(["a", "b"])
        monkeypatch.setenv("OPENAI_BASE_URL", url)  # the server named by the environment instead of an argument
        openai_chat_model("gpt-4o-mini", max_retries=0).invoke("hi")
        openai_embeddings(max_retries=0).embed_query("a")
    assert len(stub.headers) == 5 and len(stub.embedded) == 2
    assert all(a and SECRET not in a for a in _auth(stub)), _auth(stub)


def test_openai_judge_sends_no_key_to_another_server(monkeypatch):
    from embedtune.ragas import openai_judge
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    stub = StubOpenAI()
    with serve_openai(stub) as url:
        judge, judge_emb = openai_judge(base_url=url, max_retries=0)
        judge.langchain_llm.invoke("hi")
        judge_emb.embeddings.embed_query("a")
    assert len(stub.headers) == 2 and all(SECRET not in a for a in _auth(stub)), _auth(stub)


def test_an_explicit_key_is_sent_and_never_shown(monkeypatch):
    from embedtune.llm import openai_chat_model
    from embedtune.evaluate import openai_embeddings
    from embedtune.ragas import openai_judge
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    mine = "sk-mine-SECRET2"
    stub = StubOpenAI()
    with serve_openai(stub) as url:
        chat = openai_chat_model("gpt-4o-mini", base_url=url, api_key=mine, max_retries=0)
        emb = openai_embeddings(base_url=url, api_key=mine, max_retries=0)
        judge, judge_emb = openai_judge(base_url=url, api_key=mine, max_retries=0)
        chat.invoke("hi"); emb.embed_query("a"); judge.langchain_llm.invoke("hi"); judge_emb.embeddings.embed_query("a")
    assert _auth(stub) == [f"Bearer {mine}"] * 4
    for obj in (chat, emb, judge, judge_emb, judge.langchain_llm, judge_emb.embeddings):
        assert "SECRET" not in repr(obj) and "SECRET" not in str(obj)


def test_openai_itself_gets_the_environment_key(monkeypatch):
    from embedtune.llm import openai_chat_model
    from embedtune.evaluate import openai_embeddings
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False); monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    for kw in ({}, {"base_url": "https://api.openai.com/v1"}):
        assert openai_chat_model(**kw).openai_api_key.get_secret_value() == SECRET
        assert openai_embeddings(**kw).openai_api_key.get_secret_value() == SECRET
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(EnvironmentError, match="needs OPENAI_API_KEY"): openai_chat_model(base_url="https://api.openai.com/v1")


# 4. Retries of dropped connections and time-outs through a real ChatOpenAI

CHUNKS = [Document(page_content="The assert statement checks a condition and raises AssertionError when it is false.",
                   metadata={"id": "c1"})]


def test_dropped_connection_is_retried():
    from langchain_openai import ChatOpenAI
    from embedtune.questions import generate_questions
    stub = StubOpenAI(drops=2)
    with serve_openai(stub) as url:
        llm = ChatOpenAI(model="gpt-4o-mini", base_url=url, api_key="test", max_retries=0, timeout=5)
        gen = generate_questions(CHUNKS, llm, 2, cache=False, backoff=0.01, progress=False)
    assert len(stub.requests) == 3 and gen.n_called == 1 and len(gen.questions["c1"]) == 2


def test_reply_slower_than_the_timeout_is_retried():
    from langchain_openai import ChatOpenAI
    from embedtune.questions import generate_questions
    stub = StubOpenAI(slow=1, delay=1.5)
    with serve_openai(stub) as url:
        llm = ChatOpenAI(model="gpt-4o-mini", base_url=url, api_key="test", max_retries=0, timeout=0.3)
        gen = generate_questions(CHUNKS, llm, 2, cache=False, backoff=0.01, progress=False)
    assert len(stub.requests) == 2 and gen.n_called == 1 and len(gen.questions["c1"]) == 2


def test_langchain_and_openai_retry_verdicts_come_first():
    import openai
    try: import httpx2
    except ImportError: import httpx as httpx2  # what openai's errors are built on, before openai 3
    from langchain_core.exceptions import ContextOverflowError, ModelConnectionError, ModelRateLimitError
    from embedtune.questions import is_transient
    req = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    def status(code, **headers):
        return openai.APIStatusError("x", response=httpx2.Response(code, request=req, headers=headers), body=None)
    class Overflow(ContextOverflowError):  # not retryable, whatever status it carries
        status_code = 503
    assert [is_transient(e) for e in (ModelConnectionError(), ModelRateLimitError(), Overflow())] == [True, True, False]
    assert [is_transient(status(400, **{"x-should-retry": "true"})), is_transient(status(503, **{"x-should-retry": "false"}))] == [True, False]
    assert [is_transient(e) for e in (status(429), status(500), status(401), openai.APIConnectionError(request=req),
                                      openai.APITimeoutError(req), TimeoutError(), ConnectionResetError(), ValueError())] \
        == [True, True, False, True, True, True, True, False]


# 5. A corrupt question cache

def _full_cache(path):
    from embedtune.questions import QuestionCache
    cache = QuestionCache(path)
    for i in range(300): cache.put(f"k{i}", "m", "What is this? " * 70)
    cache.db.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "bad page"])
def test_corrupt_cache_is_moved_aside(tmp_path, damage):
    from embedtune.questions import QuestionCache
    path = tmp_path/"replies.sqlite"
    if damage == "garbage": path.write_bytes(b"\x07 not a database at all " * 200)
    else:
        _full_cache(path)
        with open(path, "r+b") as f:
            if damage == "truncated": f.truncate(path.stat().st_size // 2)
            else: f.seek(4096 * 40); f.write(b"\xff\x13" * 6000)
    bad = path.read_bytes()
    with pytest.warns(UserWarning, match="corrupt") as w: cache = QuestionCache(path)
    [moved] = [p for p in tmp_path.iterdir() if p.name.startswith("replies.sqlite.corrupt-")]
    assert str(path) in str(w[0].message) and str(moved) in str(w[0].message)
    assert moved.read_bytes() == bad and len(cache) == 0
    cache.put("k", "m", "1. A?")
    assert QuestionCache(path).get("k") == "1. A?"


def test_sound_cache_is_kept(tmp_path):
    from embedtune.questions import QuestionCache
    _full_cache(tmp_path/"replies.sqlite")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(QuestionCache(tmp_path/"replies.sqlite")) == 300
    assert [p.name for p in tmp_path.iterdir()] == ["replies.sqlite"]


# 6. Refusals never become training questions

REFUSALS = ["I cannot help.", "I'm sorry, I can't do that.", "I’m sorry, but I can’t assist with that.",
            "As an AI language model, I cannot write questions.", "I'm unable to help with that request.",
            "Unfortunately, I can’t provide questions for this.", "As a language model I have no opinions.",
            "I apologize, but I won't do that."]


@pytest.mark.parametrize("screen", [True, False])
def test_refusals_never_become_questions(screen):
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from embedtune.questions import generate_questions
    from embedtune.dataset import build_dataset
    real = "What does the assert statement raise when its condition is false?"
    for refusal in REFUSALS:
        fake = GenericFakeChatModel(messages=iter([AIMessage(refusal), AIMessage(real), AIMessage(refusal), AIMessage("")]))
        with pytest.warns(UserWarning, match=r"2 refusal\(s\) dropped"):
            gen = generate_questions(CHUNKS, fake, 4, cache=False, screen=screen, progress=False)
        assert gen.kept == {"c1": [real]} and gen.refused == [("c1", refusal)] * 2, (refusal, gen.kept)
        assert list(build_dataset(CHUNKS, gen)["questions"].values()) == [real]
        fake = GenericFakeChatModel(messages=iter([AIMessage(refusal), AIMessage("1."), AIMessage(refusal.upper())]))
        with pytest.warns(UserWarning) as caught:
            gen = generate_questions(CHUNKS, fake, 3, cache=False, screen=screen, progress=False)
        assert any("1 of 1 chunk(s) gave no question" in str(w.message) for w in caught)
        assert gen.kept == {} and refusal in gen.failures["c1"] and len(gen.refused) == 2, (refusal, gen)


# 7. A stalled server, a server that answers only errors, a writer that gives nothing usable: named, and the run stops

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SMALL = dict(sources=[str(ROOT/"nbs"/"files")], chunk_size=300, max_train_chunks=4, max_eval_chunks=1, n_questions=1, llm="my-model",
             teacher="")


def _run(tmp_path, url, **kw):
    from embedtune.run import Run
    return Run({**SMALL, "llm_base_url": url, "out_dir": str(tmp_path/"run"), "cache_dir": str(tmp_path/"cache"), **kw}, verbose=False)


def test_a_stalled_server_is_named_and_the_run_stops_with_resume_advice(tmp_path, capsys):
    import time
    stub = StubOpenAI(slow=1000, delay=3)  # takes every request, answers none within the time-out
    with serve_openai(stub) as url:
        run, t = _run(tmp_path, url, llm_timeout=1), time.time()
        with pytest.raises(RuntimeError) as e: run.write_questions()
        took = time.time() - t
    said = str(e.value)
    assert f"no reply from {url} for 2 s: is it up" in said and "rerun to resume" in said and str(tmp_path/"cache") in said, said
    out = capsys.readouterr().out
    assert out.count(f"no reply from {url} for 1 s; waiting until 2 s") == 1, out  # said once while waiting, before the stop
    assert took < 10 and 1 <= len(stub.requests) <= 8  # each request in flight asked once, then the stop


def test_a_busy_server_is_waited_for_not_resent(tmp_path, capsys):
    stub = StubOpenAI(slow=1000, delay=0.4, serial=True)  # one slot: a request waits for all those before it
    with serve_openai(stub) as url:
        run = _run(tmp_path, url, llm_timeout=1, llm_concurrency=8)
        run.write_questions()
    asked = sum(w.n_called for w in run.written.values())
    assert "no reply" not in capsys.readouterr().out and len(stub.requests) == asked >= 4  # the 4th waited 1.6 s: not resent
    assert len(run.written["train"].questions) == 4


def test_a_server_with_fewer_slots_than_questions_is_asked_one_reply_at_a_time(capsys):
    from langchain_openai import ChatOpenAI
    from embedtune.questions import generate_questions
    stub = StubOpenAI(slots=1)  # llama-server --parallel 1 refuses n = 4
    with serve_openai(stub) as url:
        llm = ChatOpenAI(model="m", base_url=url, api_key="test", max_retries=0)
        res = generate_questions(CHUNKS, llm, 4, cache=False, concurrency=1, progress=False, screen=False)
    assert [r.get("n") for r in stub.requests] == [4] + [None] * 4 * len(CHUNKS)  # refused once, then one reply per request
    assert capsys.readouterr().out.count(f"{url} refused 4 replies in one request") == 1
    assert res.n_replies == 4 * len(CHUNKS) and res.n_called == 1 + 4 * len(CHUNKS) and not res.failures


def test_a_server_that_answers_only_errors_is_named():
    from langchain_openai import ChatOpenAI
    from embedtune.questions import generate_questions
    stub = StubOpenAI(statuses=[503] * 100)
    with serve_openai(stub) as url:
        llm = ChatOpenAI(model="m", base_url=url, api_key="test", max_retries=0)
        with pytest.raises(RuntimeError) as e: generate_questions(CHUNKS, llm, 1, cache=False, backoff=0.01, progress=False)
    assert f"Writing questions stopped ({url}): " in str(e.value) and "Error code: 503" in str(e.value), str(e.value)
    assert len(stub.requests) == 5  # retried 4 times, then named


@pytest.mark.parametrize("reply, kind", [("", "empty"), ("#### ... ----", "unparseable"), ("I'm sorry, I can't help with that.", "refusals")])
def test_a_writer_that_gives_nothing_usable_stops_the_run_with_counts(tmp_path, reply, kind):
    from embedtune.questions import WriterError
    stub = StubOpenAI(contents=[reply] * 1000)
    with serve_openai(stub) as url:
        run = _run(tmp_path, url)
        with pytest.raises(WriterError) as e, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run.write_questions()
    said = str(e.value)
    assert f"for the train split: 0 of 4 chunks kept a question. Its replies: 4 {kind}" in said and url in said, said
    assert "train chunks" not in said.split("Check")[1] and len(stub.requests) == 4  # stopped at the first split


# 8. A large corpus: training's validation searches no more chunks than evaluation may (eval_corpus_max), and says so

def test_training_validation_is_capped_like_evaluation(tmp_path, capsys):
    from embedtune.load import demo_corpus
    from embedtune.run import Run
    for i, d in enumerate(demo_corpus()): (tmp_path/f"{i:03d}.txt").write_text(d.page_content)  # a folder without labelled queries
    with serve_openai(StubOpenAI()) as url:
        run = Run({"sources": [str(tmp_path)], "llm": "my-model", "llm_base_url": url, "split_fractions": [0.1, 0.8, 0.1],
                   "eval_corpus_max": 100, "max_train_chunks": 4, "max_eval_chunks": 2, "n_questions": 1, "teacher": "",
                   "out_dir": str(tmp_path/"run"), "cache_dir": str(tmp_path/"cache")})
        run.write_questions()
        val = run.validation()
    needed = {c for cs in run.datasets["val"]["relevant_contexts"].values() for c in cs}
    assert run.real is None and len(run.datasets["val"]["corpus"]) > 400 and len(val["corpus"]) == 100 and needed <= set(val["corpus"])
    assert f"Validation in training: Searching 100 of {len(run.datasets['val']['corpus']):,} chunks (eval_corpus_max 100)" in capsys.readouterr().out
