"""Question writing: the writer as it was against the new default, on the same chunks, quiet and with one core busy.

    .venv/bin/python bench/generation.py                     # 32 demo chunks; writes bench/results/generation.json
    .venv/bin/python bench/generation.py --corpus scifact    # 32 SciFact abstracts instead
    .venv/bin/python bench/generation.py --before-lib DIR    # "before" on another llama-cpp-python build (see below)
    .venv/bin/python bench/generation.py --ablation          # one change at a time: where the speed-up comes from

Both sides run the package's own `local_chat_model` and `generate_questions`, each with a fresh cache, each in a
process of its own:
- before: the writer until December 2026: one llama.cpp model on all cores, one request at a time, the old prompt
  asking for 2 numbered questions per call under a grammar, greedy decoding.
- after: the new default: one single-thread model per core (`n_workers`), flash attention, the new prompt, one
  question per reply, `--questions` sampled per chunk in one request (the chunk is processed once, the replies are
  decoded side by side), a logit bias against the words that point at the source ("document", "this", …).
`--before-lib DIR` runs "before", and "after" a second time, on the llama-cpp-python build in DIR (a folder holding a
`llama_cpp` package, e.g. the portable AVX2 build embedtune installed until December 2026): the gain of the build and
of the rest, apart.
Per side: seconds per question, questions per second (written, and kept by the filter), prompt and output tokens per
question actually decoded (llama.cpp's counters for one-at-a-time replies, `ReplyBatch`'s for side-by-side ones; a
reused prompt prefix is not counted: it costs nothing), the share of
questions that cannot stand alone (the filter's deictic, refusal and script reasons) and of near-duplicates, with 95 %
Wilson intervals, and the side's peak memory. "Busy": a process spinning on one core, started by the bench, runs
during both sides. The order of the sides alternates between the two conditions (quiet forwards, busy backwards).
"""
import argparse, json, math, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
import llama_cpp
from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from embedtune.chunk import chunk_documents, split_chunks
from embedtune.core import free_memory, save_json, load_json
from embedtune.filter import filter_questions
from embedtune.llm import local_chat_model
from embedtune.load import demo_corpus
from embedtune.questions import QuestionCache, generate_questions

RESULTS = Path(__file__).parent/"results"/"generation.json"
SCIFACT = Path(__file__).resolve().parents[2]/"shared"/"data"/"scifact-dev"/"corpus.jsonl"
# The prompt of the writer before December 2026, kept here as the baseline
OLD_PROMPT = ChatPromptTemplate.from_messages([
    ("system", "You write search questions for testing a retrieval system. Every question must be answerable from "
               "the given passage alone, be specific to it, and make sense to a reader who has not seen it."),
    ("human", "Passage:\n{context}\n\nWrite {n_questions} different questions that this passage answers. "
              "Number them 1., 2., and so on, one per line, with nothing else."),
])
NOT_ALONE = {"deictic", "refusal", "script"}
# keeps one core busy, and stops when the bench does (even when the bench is killed)
SPIN = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    for _ in range(100_000): pass"


def bench_chunks(corpus: str, n: int) -> list[Document]:
    "`n` chunks of about 1,000 characters: the demo corpus's train split, or SciFact abstracts (a fixed sample)."
    if corpus == "demo": return split_chunks(chunk_documents(demo_corpus(), chunk_size=1000, chunk_overlap=20))["train"][:n]
    import random
    rows = [json.loads(l) for l in SCIFACT.read_text().splitlines()]
    random.Random(0).shuffle(rows)
    return chunk_documents([Document(f"{r['title']}\n{r['text']}"[:1500], metadata={"source": r["_id"]}) for r in rows[:n]],
                           chunk_size=1500, chunk_overlap=0)[:n]


def wilson(k: int, n: int) -> list[float]:
    "95 % Wilson interval of the share k / n."
    if not n: return [0.0, 0.0]
    p, z = k / n, 1.96
    mid, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(mid - half, 3), round(mid + half, 3)]


def run_side(name: str, chunks, make_llm, gen_kwargs: dict) -> dict:
    "Write questions for `chunks` with the writer `make_llm()`; time, count tokens, screen."
    llm = make_llm()
    generate_questions(chunks[:1], llm, cache=False, progress=False, **gen_kwargs)  # warm-up: load pages, fill caches
    for c in llm._clients: llama_cpp.llama_perf_context_reset(c._ctx.ctx)
    for b in llm._batches.values(): b.n_prompt = b.n_reply = 0  # made by the warm-up: side-by-side replies
    t = time.perf_counter()
    gen = generate_questions(chunks, llm, cache=QuestionCache(Path(tempfile.mkdtemp())/"r.sqlite"), progress=False, **gen_kwargs)
    secs = time.perf_counter() - t
    perf = [llama_cpp.llama_perf_context(c._ctx.ctx) for c in llm._clients]  # one-at-a-time replies
    prompt_tokens = sum(p.n_p_eval for p in perf) + sum(b.n_prompt for b in llm._batches.values())
    output_tokens = sum(p.n_eval for p in perf) + sum(b.n_reply for b in llm._batches.values())
    written = sum(map(len, gen.questions.values())) + len(gen.refused)  # refusals never reach the filter: counted as before
    s = filter_questions(gen.questions, {c.metadata["id"]: c.page_content for c in chunks})
    alone = sum(1 for *_, r in s.dropped if r in NOT_ALONE) + len(gen.refused)
    dups = sum(1 for *_, r in s.dropped if r == "duplicate")
    kept = written - len(s.dropped) - len(gen.refused)
    del llm; free_memory()  # the workers' threads hold the models until collected
    return {"side": name, "seconds": round(secs, 1), "chunks": len(chunks), "questions": written, "kept": kept,
            "s_per_question": round(secs / written, 3), "questions_per_s": round(written / secs, 3),
            "kept_per_s": round(kept / secs, 3),
            "prompt_tokens_per_question": round(prompt_tokens / written, 1),
            "output_tokens_per_question": round(output_tokens / written, 1),
            "not_alone_share": round(alone / written, 3), "not_alone_ci95": wilson(alone, written),
            "duplicate_share": round(dups / written, 3), "duplicate_ci95": wilson(dups, written),
            "build": llama_cpp.llama_print_system_info().decode().strip(),
            "peak_memory_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "dropped": s.counts, "examples": [q for qs in list(gen.questions.values())[:3] for q in qs]}


def sides(questions: int, threads: int) -> dict:
    "Each side's chat model arguments and question-writing arguments."
    return {"before": (dict(n_threads=threads, n_workers=1, flash_attn=False),
                       dict(n_questions=2, per_call=2, prompt=OLD_PROMPT, temperature=0.0, avoid=[])),
            "after": (dict(n_threads=threads), dict(n_questions=questions))}


def one_side(name: str, corpus: str, n_chunks: int, questions: int, threads: int):
    "Run side `name` (its base name: what comes before the first comma) and print its row as one JSON line."
    model_kw, gen_kw = sides(questions, threads)[name.split(",")[0]]
    print(json.dumps(run_side(name, bench_chunks(corpus, n_chunks), lambda: local_chat_model(**model_kw), gen_kw)))


def main(corpus="demo", n_chunks=32, questions=4, threads=2, before_lib=None):
    names = ["before", "after"] + ([f"after, build of --before-lib"] if before_lib else [])
    lib = {"before": before_lib, "after, build of --before-lib": before_lib}
    rows = []
    for load, order in (("quiet", names), ("one core busy", names[::-1])):
        spin = subprocess.Popen([sys.executable, "-c", SPIN]) if load != "quiet" else None
        try:
            for name in order:
                env = {**os.environ, **({"PYTHONPATH": str(Path(lib[name]).resolve())} if lib.get(name) else {})}
                out = subprocess.run([sys.executable, __file__, "--side", name, "--corpus", corpus, "--chunks", str(n_chunks),
                                      "--questions", str(questions), "--threads", str(threads)],
                                     env=env, check=True, capture_output=True, text=True).stdout
                rows.append({"load": load, **json.loads(out.strip().splitlines()[-1])})
                r = rows[-1]
                print(f"{load:>14} {name:>29}: {r['seconds']:6.1f} s, {r['questions']} questions, {r['s_per_question']:.2f} s/question, "
                      f"{r['prompt_tokens_per_question']:.0f}+{r['output_tokens_per_question']:.0f} tokens/question, "
                      f"not alone {r['not_alone_share']:.0%} {r['not_alone_ci95']}, duplicates {r['duplicate_share']:.0%}, "
                      f"{r['peak_memory_gb']} GB", flush=True)
        finally:
            if spin: spin.kill(); spin.wait()
    row = lambda load, side: next(r for r in rows if r["load"] == load and r["side"] == side)
    speedup = {load: {side: round(row(load, side)["questions_per_s"] / row(load, "before")["questions_per_s"], 2)
                      for side in names[1:]} for load in ("quiet", "one core busy")}
    print(f"questions per second over before: {speedup}")
    out = load_json(RESULTS) if RESULTS.exists() else {}
    out.setdefault("writing", {})[corpus] = {
        "protocol": f"{n_chunks} chunks of ~1,000 characters ({corpus}), Qwen2.5-Coder-0.5B Q4_K_M, {threads} cores, "
                    f"each side in a process of its own; before: 1 model x {threads} threads, old prompt, 2 numbered "
                    f"questions per call, grammar, greedy; after: {threads} models x 1 thread, flash attention, new prompt, "
                    f"{questions} questions per chunk, one per reply, sampled (T 0.7) and decoded side by side, logit bias "
                    "against pointing words; busy: one spinning process"
                    + (f"; before and 'after, build of --before-lib' on {before_lib}" if before_lib else ""),
        "date": time.strftime("%Y-%m-%d"), "speedup_questions_per_s": speedup, "rows": rows}
    save_json(out, RESULTS)
    print(f"wrote {RESULTS}")


def ablation(corpus="demo", n_chunks=32, threads=2):
    "One change at a time, from the old writer to the new default, quiet, in one run: where the speed-up comes from."
    chunks = bench_chunks(corpus, n_chunks)
    old = dict(n_questions=2, per_call=2, prompt=OLD_PROMPT, temperature=0.0, avoid=[])
    steps = [("before: 1 model x 2 threads", dict(n_workers=1), old),
             ("+ 2 models x 1 thread", {}, old),
             ("+ flash attention", dict(flash_attn=True), old),
             ("+ new prompt, 1 question per reply, 2 sampled per chunk", dict(flash_attn=True), dict(n_questions=2, avoid=[])),
             ("+ logit bias against pointing words", dict(flash_attn=True), dict(n_questions=2)),
             ("+ 4 questions per chunk (the new default)", dict(flash_attn=True), dict(n_questions=4))]
    rows = []
    for name, model_kw, gen_kw in steps:
        make = lambda: local_chat_model(n_threads=threads, **{"flash_attn": False, **model_kw})
        rows.append(run_side(name, chunks, make, gen_kw))
        r = rows[-1]
        print(f"{name:>58}: {r['s_per_question']:.2f} s/question, {r['questions_per_s'] / rows[0]['questions_per_s']:.2f}x, "
              f"{r['prompt_tokens_per_question']:.0f}+{r['output_tokens_per_question']:.0f} tokens/question, "
              f"not alone {r['not_alone_share']:.0%}", flush=True)
    out = load_json(RESULTS) if RESULTS.exists() else {}
    out.setdefault("writing_ablation", {})[corpus] = {
        "protocol": f"{n_chunks} chunks ({corpus}), quiet, {threads} cores, one change at a time in one run", "date": time.strftime("%Y-%m-%d"),
        "rows": [{k: v for k, v in r.items() if k != "examples"} for r in rows]}
    save_json(out, RESULTS)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", choices=["demo", "scifact"], default="demo")
    ap.add_argument("--chunks", type=int, default=32)
    ap.add_argument("--questions", type=int, default=4, help="questions per chunk on the new side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--before-lib", help="a folder with another llama-cpp-python build for the before side")
    ap.add_argument("--ablation", action="store_true", help="one change at a time instead (quiet only)")
    ap.add_argument("--side", help=argparse.SUPPRESS)  # internal: run one side, print its row
    a = ap.parse_args()
    if a.side: one_side(a.side, a.corpus, a.chunks, a.questions, a.threads)
    elif a.ablation: ablation(a.corpus, a.chunks, a.threads)
    else: main(a.corpus, a.chunks, a.questions, a.threads, a.before_lib)
