"""Questions/second of embedtune's generation step against a plain llama.cpp loop on the same chunks and model.

    .venv/bin/python bench/generation.py --chunks 30

Both sides use one loaded Llama instance, the same prompt, grammar and decoding parameters; embedtune's side runs
its full path (asyncio, thread executor, SQLite cache in a fresh temporary file, parsing). The two alternate for
`--rounds` rounds and the best time of each is reported, so a busy moment on the machine does not decide the result.
"""
import argparse, tempfile, time
from pathlib import Path
from embedtune.chunk import chunk_documents, split_chunks
from embedtune.llm import local_chat_model
from embedtune.load import demo_corpus
from embedtune.questions import QUESTION_PROMPT, QuestionCache, call_kwargs, generate_questions, parse_questions

ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def plain_loop(llama, chunks, n, params):
    "The baseline: format the prompt, call llama.cpp, parse; one chunk after another."
    out = {}
    for c in chunks:
        msgs = [{"role": ROLES[m.type], "content": m.content} for m in QUESTION_PROMPT.format_messages(context=c.page_content, n_questions=n)]
        reply = llama.create_chat_completion(messages=msgs, **params)["choices"][0]["message"]["content"]
        out[c.metadata["id"]] = parse_questions(reply, n)
    return out


def main(n_chunks=30, n_questions=2, rounds=2, threads=None):
    chunks = split_chunks(chunk_documents(demo_corpus()))["train"][:n_chunks]
    llm = local_chat_model(n_threads=threads)
    params = {**llm._get_parameters(None), **call_kwargs(llm, n_questions)}
    plain_loop(llm.client, chunks[:1], n_questions, params)  # warm-up
    best = {"plain llama.cpp loop": float("inf"), "embedtune": float("inf")}
    for r in range(rounds):
        t = time.perf_counter(); base = plain_loop(llm.client, chunks, n_questions, params)
        best["plain llama.cpp loop"] = min(best["plain llama.cpp loop"], time.perf_counter() - t)
        cache = QuestionCache(Path(tempfile.mkdtemp())/"replies.sqlite")
        t = time.perf_counter(); gen = generate_questions(chunks, llm, n_questions, cache=cache, progress=False)
        best["embedtune"] = min(best["embedtune"], time.perf_counter() - t)
        assert gen.n_called == len(chunks)
    n_q = sum(map(len, gen.questions.values()))
    same = sum(base[k] == gen.questions.get(k) for k in base)
    print(f"{len(chunks)} chunks, {n_questions} questions asked per chunk, {llm.n_threads} threads, best of {rounds} rounds")
    print(f"identical questions on both sides: {same}/{len(chunks)} chunks; {n_q} questions in all")
    for name, s in best.items(): print(f"{name:>22}: {s:7.2f} s  {n_q / s:5.2f} questions/s  {s / len(chunks):5.2f} s/chunk")
    overhead = best["embedtune"] / best["plain llama.cpp loop"] - 1
    print(f"embedtune overhead: {overhead:+.1%} (target: at most +10%)")
    return overhead


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=30)
    ap.add_argument("--n-questions", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    main(a.chunks, a.n_questions, a.rounds, a.threads)
