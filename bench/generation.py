"""Questions/second of embedtune's generation step against a plain llama.cpp loop on the same chunks and model.

    .venv/bin/python bench/generation.py --chunks 30

Both sides use one loaded Llama instance, the same prompt, grammar and decoding parameters; embedtune's side runs
its full path (asyncio, its model thread, SQLite cache in a fresh temporary file, parsing). The machine's speed drifts
by ±10 % over minutes (measured), as much as the difference being measured, so each side does all chunks in turn
and the order alternates from round to round (ABBA...); the times are summed over `--rounds` rounds.
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
    secs, base, ours = {"plain llama.cpp loop": 0.0, "embedtune": 0.0}, {}, {}
    for r in range(rounds):
        cache = QuestionCache(Path(tempfile.mkdtemp())/"replies.sqlite")
        sides = [("plain llama.cpp loop", lambda: base.update(plain_loop(llm.client, chunks, n_questions, params))),
                 ("embedtune", lambda: ours.update(generate_questions(chunks, llm, n_questions, cache=cache, progress=False).questions))]
        for name, run in (sides if r % 2 == 0 else sides[::-1]):
            t = time.perf_counter(); run(); secs[name] += time.perf_counter() - t
    n_q = sum(map(len, ours.values())) * rounds
    same = sum(base[k] == ours.get(k) for k in base)
    print(f"{len(chunks)} chunks x {rounds} rounds (ABBA), {n_questions} questions asked per chunk, {llm.n_threads} threads")
    print(f"identical questions on both sides: {same}/{len(chunks)} chunks; {n_q} questions per side in all")
    for name, s in secs.items(): print(f"{name:>22}: {s:7.2f} s  {n_q / s:5.2f} questions/s  {s / len(chunks) / rounds:5.2f} s/chunk")
    overhead = secs["embedtune"] / secs["plain llama.cpp loop"] - 1
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
