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
from scifact import read_scifact, evaluate
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
    "(question, first 1,000 characters) rows for the abstracts `ids`, as bench/scifact.py generates them (from its cache)."
    from langchain_core.documents import Document
    from embedtune.chunk import chunk_documents
    from embedtune.llm import chat_model
    from embedtune.questions import generate_questions
    docs = [Document(page_content=f"{corpus[i][0]}\n{corpus[i][1]}", metadata={"source": f"scifact:{i}", "doc_id": i}) for i in ids]
    first = {}
    for c in chunk_documents(docs, chunk_size=1000, chunk_overlap=0): first.setdefault(c.metadata["doc_id"], c)
    gen = generate_questions([first[i] for i in ids], chat_model(llm), n)
    return [{"anchor": q, "positive": first[i].page_content} for i in ids for q in gen.questions.get(first[i].metadata["id"], [])]

def main(name, source, docs=1000, epochs=1, batch_size=32, lr=2e-5, seq=256, remove=False, llm_docs=0, out="runs/scifact"):
    corpus, claims, qrels = read_scifact()
    rng = random.Random(0); rng.sample(sorted(claims), 8)  # as bench/scifact.py: the same abstracts in the same order
    ids = rng.sample(sorted(corpus), len(corpus))
    rows = pairs_from(ids[:docs], corpus, source, remove) + (llm_rows(ids[:llm_docs], corpus) if llm_docs else [])
    random.Random(1).shuffle(rows)
    print(f"{name}: {len(rows)} pairs, e.g. {rows[0]['anchor'][:120]!r}", flush=True)
    model = load_model(max_seq_length=seq)
    m = fine_tune(model, Dataset.from_list(rows), None, Path(out)/"sources"/name.replace(" ", "_"), epochs, batch_size, lr)
    texts = {i: f"{a} {b}".strip() for i, (a, b) in corpus.items()}
    t = time.time(); s = evaluate(model, claims, qrels, texts, ids[:llm_docs] or ids[:docs])
    r = {"config": name, "source": source, "remove": remove, "llm_docs": llm_docs, "pairs": len(rows), "seq": seq, "epochs": epochs,
         "batch_size": batch_size, "lr": lr, **s, "train_s": round(m["train_seconds"]), "eval_s": round(time.time() - t)}
    print(r, flush=True)
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out)/"sources.jsonl", "a") as f: f.write(json.dumps(r) + "\n")

if __name__ == "__main__": main(**json.loads(sys.argv[1]))
