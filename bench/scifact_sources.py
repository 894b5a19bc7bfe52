"""Does any query source built from the documents themselves move all-MiniLM-L6-v2 on SciFact's claims?

    .venv/bin/python bench/scifact_sources.py '{"name": "titles", "source": "titles"}'
    .venv/bin/python bench/scifact_sources.py '{"name": "last sentence", "source": "last", "remove": true}'
    .venv/bin/python bench/scifact_sources.py '{"name": "random sentence @512", "source": "random", "seq": 512}'
    .venv/bin/python bench/scifact_sources.py '{"name": "all titles + questions", "source": "titles", "docs": 5183, "llm_docs": 500}'

No LLM: the queries are each abstract's title (positive: its text), its last sentence (inverse cloze: positive the
abstract without it, with `remove`) or one random sentence (kept in the positive unless `remove`). The same 1,000
abstracts as bench/scifact.py (the same fixed order), MultipleNegativesRankingLoss inside MatryoshkaLoss, then the 809
claims against the whole corpus. With `llm_docs`, the cached questions of bench/scifact.py's first `llm_docs` abstracts
are added (their claims are then reported apart as "seen"). One row per run is appended to runs/scifact/sources.jsonl.
"""
import json, random, re, sys, time
from pathlib import Path
from datasets import Dataset
from scifact import corpus_texts, evaluate, first_chunks, fixed_order, read_scifact
from embedtune.train import fine_tune, load_model

# SciFact's abstracts join sentences without a space ("...disabilities.A line scan...")
SENT = re.compile(r"(?<=[a-z0-9)\]%][.!?])\s*(?=[A-Z])")
def sentences(text:str) -> list[str]: return [s for s in SENT.split(text.strip()) if len(s) > 30]

def pairs_from(ids, corpus, source="titles", remove=False, seed=0) -> list[dict]:
    "(anchor, positive) rows from the abstracts `ids`: title, last sentence or a random sentence as the query."
    rng, rows = random.Random(seed), []
    for i in ids:
        title, text = corpus[i]
        if source == "titles":
            if title and text: rows.append({"anchor": title, "positive": text})
            continue
        ss = sentences(text)
        if len(ss) < 2: continue
        p = len(ss) - 1 if source == "last" else rng.sample(range(len(ss)), 1)[0]
        rest = " ".join(s for j, s in enumerate(ss) if not (remove and j == p))
        rows.append({"anchor": ss[p], "positive": f"{title} {rest}".strip()})
    return rows

def llm_rows(ids, corpus, llm="local", n=2) -> list[dict]:
    "(question, first chunk) rows for the abstracts `ids`, as bench/scifact.py generates them (from its cache)."
    from embedtune.llm import chat_model
    from embedtune.questions import generate_questions
    chunks = first_chunks(corpus, ids)
    gen = generate_questions(chunks, chat_model(llm), n)
    return [{"anchor": q, "positive": c.page_content} for c in chunks for q in gen.questions.get(c.metadata["id"], [])]

def main(name, source, docs=1000, epochs=1, batch_size=32, lr=2e-5, seq=256, remove=False, llm_docs=0, out="runs/scifact"):
    corpus, claims, qrels = read_scifact()
    _, ids = fixed_order(claims, corpus)  # as bench/scifact.py: the same abstracts in the same order
    rows = pairs_from(ids[:docs], corpus, source, remove) + (llm_rows(ids[:llm_docs], corpus) if llm_docs else [])
    random.Random(1).shuffle(rows)
    print(f"{name}: {len(rows)} pairs, e.g. {rows[0]['anchor'][:120]!r}", flush=True)
    model = load_model(max_seq_length=seq)
    m = fine_tune(model, Dataset.from_list(rows), None, Path(out)/"sources"/name.replace(" ", "_"), epochs, batch_size, lr)
    t = time.time(); s = evaluate(model, claims, qrels, corpus_texts(corpus), ids[:llm_docs] or ids[:docs])
    r = {"config": name, "source": source, "remove": remove, "llm_docs": llm_docs, "pairs": len(rows), "seq": seq, "epochs": epochs,
         "batch_size": batch_size, "lr": lr, **s, "train_s": round(m["train_seconds"]), "eval_s": round(time.time() - t)}
    print(r, flush=True)
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out)/"sources.jsonl", "a") as f: f.write(json.dumps(r) + "\n")

if __name__ == "__main__": main(**json.loads(sys.argv[1]))
