"""Retrieval quality on real queries: embedtune's pipeline on the SciFact dev corpus, judged on its 809 expert claims.

    .venv/bin/python bench/scifact.py --docs 500                  # generate (cached), fine-tune with the recipe, evaluate
    .venv/bin/python bench/scifact.py --docs 500 --ablation       # every configuration of CONFIGS
    .venv/bin/python bench/scifact.py --docs 500 --configs "embedtune,lr 1e-4"
    .venv/bin/python bench/scifact.py --docs 1000 --generate-only # just fill the question cache

The pipeline's steps on SciFact's 5,183 abstracts: the first chunk of each of `--docs` abstracts (a fixed random order,
so every budget extends the previous one) gets questions from the LLM; 90 % train, 10 % validation; round trip, hard
negatives and the guided loss use the base model; the fine-tuned model is scored on the 809 claims against the whole
corpus (title and text, the BEIR convention) with sentence-transformers' InformationRetrievalEvaluator. The claims are
only measured on, never trained on; `--examples` of them (at most 8) can be shown to the LLM as query style.
Scores are also given apart for the claims whose abstracts got questions ("seen") and for the others: fine-tuning
helps the first and leaves the second alone, so a budget that covers few abstracts cannot move the whole benchmark.
Results go to runs/scifact/docs<N>/results.json (a configuration already there is not run again).
"""
import argparse, json, random, time
from pathlib import Path
from langchain_core.documents import Document

DATA = Path(__file__).resolve().parents[2]/"shared"/"data"/"scifact-dev"

def read_scifact(data=DATA):
    "SciFact's corpus {id: (title, text)}, claims {id: text} and relevance judgements {claim id: {doc ids}}."
    corpus = {d["_id"]: (d["title"], d["text"]) for d in map(json.loads, open(Path(data)/"corpus.jsonl"))}
    claims = {q["_id"]: q["text"] for q in map(json.loads, open(Path(data)/"queries.jsonl"))}
    qrels = {}
    for line in list(open(Path(data)/"qrels.tsv"))[1:]:
        q, c, _ = line.split("\t"); qrels.setdefault(q, set()).add(c)
    return corpus, {q: t for q, t in claims.items() if q in qrels}, qrels

def style_claims(claims, seed=0) -> list[str]:
    "Ids of the 8 claims that may be shown to the writer as query style (never evaluated on then)."
    return random.Random(seed).sample(sorted(claims), 8)

def fixed_order(claims, corpus, seed=0) -> tuple[list[str], list[str]]:
    "8 claims that may be shown as query style, and every abstract in a fixed random order (each budget a prefix of the next)."
    rng = random.Random(seed)
    style = rng.sample(sorted(claims), 8)  # the same as style_claims(claims, seed); rng then orders the corpus
    return [claims[q] for q in style], rng.sample(sorted(corpus), len(corpus))

def corpus_texts(corpus) -> dict[str, str]:
    "Each abstract as the retriever sees it, in BEIR's convention: title, space, text."
    return {i: f"{t} {x}".strip() for i, (t, x) in corpus.items()}

def first_chunks(corpus, ids, chunk_size=1000) -> list[Document]:
    "The first chunk of each abstract in `ids`: the text MiniLM sees, and what the LLM is shown."
    from embedtune.chunk import chunk_documents
    docs = [Document(page_content=f"{corpus[i][0]}\n{corpus[i][1]}", metadata={"source": f"scifact:{i}", "doc_id": i}) for i in ids]
    first = {}
    for c in chunk_documents(docs, chunk_size=chunk_size, chunk_overlap=0): first.setdefault(c.metadata["doc_id"], c)
    return [first[i] for i in ids]

def per_query_ndcg(Q, D, qids, dids, qrels):
    "nDCG@10 of each query (rows of `Q`) from its top 10 of the whole corpus `D` (embedtune's own rank_metrics)."
    import numpy as np
    from embedtune.evaluate import rank_metrics
    top = np.argsort(-(Q @ D.T), axis=1)[:, :10]
    return np.array([rank_metrics([dids[j] for j in row], qrels[q], ks=(10,))["ndcg@10"] for q, row in zip(qids, top)])

def ci95(a, b) -> list[float]:
    "The 95 % paired bootstrap interval of mean(a - b) over queries (embedtune's paired_ci), rounded."
    from embedtune.evaluate import paired_ci
    return [round(x, 4) for x in paired_ci(a, b)[1:]]

METRICS = {"ndcg@10": "cosine_ndcg@10", "mrr@10": "cosine_mrr@10", "recall@10": "cosine_recall@10", "recall@100": "cosine_recall@100"}

def evaluator(claims, qrels, texts, name="scifact"):
    "sentence-transformers' InformationRetrievalEvaluator for `claims` against the corpus `texts`."
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    return InformationRetrievalEvaluator(claims, texts, qrels, name=name, mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[10],
                                         precision_recall_at_k=[10, 100], map_at_k=[10], batch_size=32, write_csv=False)

def evaluate(model, claims, qrels, texts, seen=()) -> dict:
    "nDCG@10, MRR@10, Recall@10, Recall@100 on the claims; with `seen` (abstracts trained on), also split by whether a claim's are."
    ev = evaluator(claims, qrels, texts)
    emb = ev.embed_inputs(model, ev.corpus, encode_fn_name="document")  # the corpus is encoded once for every subset
    scores = ev(model, corpus_embeddings=emb)
    out = {k: round(scores[f"scifact_{v}"], 4) for k, v in METRICS.items()}
    if seen:
        for part, keep in (("seen", True), ("unseen", False)):
            qs = {q: t for q, t in claims.items() if bool(qrels[q] & set(seen)) == keep}
            s = evaluator(qs, qrels, texts, part)(model, corpus_embeddings=emb)
            out[f"{part} claims"], out[f"{part} ndcg@10"] = len(qs), round(s[f"{part}_cosine_ndcg@10"], 4)
    return out

# each option of the recipe, and the ablations that switch one off
RECIPE = dict(round_trip=3, negatives=True, guide=True, epochs=1, batch_size=32, lr=2e-5, max_seq_length=256)
CONFIGS = {"embedtune": {}, "no round trip": dict(round_trip=0), "no hard negatives": dict(negatives=False),
           "no guided loss": dict(guide=False), "lr 1e-4": dict(lr=1e-4),
           "seed recipe": dict(round_trip=0, negatives=False, guide=False, epochs=3, batch_size=16)}

def run_config(name, opts, dss, negatives_corpus, claims, qrels, texts, out, seen=()):
    "Fine-tune with `opts` (the recipe's options), evaluate on the claims, return a row of the ablation table."
    from embedtune.train import fine_tune, load_model, training_pairs
    o = {**RECIPE, **opts}
    base, t = load_model(max_seq_length=o["max_seq_length"]), time.time()
    pairs, counts = training_pairs(dss["train"], base, o["round_trip"], o["negatives"], corpus=negatives_corpus)
    dropped, prep = counts["round_trip_dropped"], time.time() - t
    model = load_model(max_seq_length=o["max_seq_length"])
    m = fine_tune(model, pairs, dss["val"], Path(out)/"models"/name.replace(" ", "_"), o["epochs"], o["batch_size"], o["lr"],
                  guide=base if o["guide"] else None)
    t = time.time(); scores = evaluate(model, claims, qrels, texts, seen)
    print(f"{name}: {scores}", flush=True)
    return {"config": name, **o, "dropped": dropped, "train_rows": m["train_pairs"], "prep_s": round(prep), "train_s": round(m["train_seconds"]),
            "eval_s": round(time.time() - t), "val_before": round(m["val_before"]["eval_val_cosine_ndcg@10"], 4),
            "val_after": round(m["val_after"]["eval_val_cosine_ndcg@10"], 4), **scores}

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1000, help="generation budget: abstracts shown to the LLM")
    ap.add_argument("--examples", type=int, default=0, help="claims shown to the LLM as examples of query style (<= 8)")
    ap.add_argument("--questions", type=int, default=2, help="queries per abstract")
    ap.add_argument("--llm", default="local")
    ap.add_argument("--chunk-size", type=int, default=1000, help="characters of each abstract shown to the LLM and trained on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--ablation", action="store_true", help="run every configuration, not only embedtune's recipe")
    ap.add_argument("--configs", default="", help="comma-separated configuration names to run (default: embedtune)")
    ap.add_argument("--out", default="runs/scifact")
    a = ap.parse_args()
    if a.examples > 8: ap.error("--examples: at most 8 claims may be shown to the LLM")
    from embedtune.chunk import split_chunks
    from embedtune.llm import chat_model
    from embedtune.questions import WrittenQuestions, generate_questions
    from embedtune.dataset import build_dataset
    corpus, claims, qrels = read_scifact()
    examples, order = fixed_order(claims, corpus, a.seed)
    chunks = first_chunks(corpus, order[:a.docs], a.chunk_size)
    t = time.time()
    gen = generate_questions(chunks, chat_model(a.llm), a.questions, examples=examples[:a.examples])
    print(f"generation: {a.docs} abstracts, {sum(map(len, gen.questions.values()))} queries, {gen.n_called} calls in {time.time() - t:.0f} s")
    if a.generate_only: return
    from embedtune.core import load_json, save_json
    from embedtune.train import load_model
    splits = split_chunks(chunks, fractions=(0.9, 0.1, 0.0), seed=a.seed)
    dss = {k: build_dataset(cs, WrittenQuestions(questions={c.metadata["id"]: gen.questions[c.metadata["id"]] for c in cs
                                                    if c.metadata["id"] in gen.questions})) for k, cs in splits.items() if cs}
    texts = corpus_texts(corpus)
    out = Path(a.out)/f"docs{a.docs}"; out.mkdir(parents=True, exist_ok=True)
    res_path = out/"results.json"
    rows = {r["config"]: r for r in (load_json(res_path) if res_path.exists() else [])}
    seen = order[:a.docs]  # the abstracts that get questions: claims about them are "seen"
    base_path = out/"base.json"  # the base model's scores, split by this budget's seen abstracts
    if not base_path.exists():
        t = time.time()
        save_json({"config": "base", **evaluate(load_model(), claims, qrels, texts, seen), "eval_s": round(time.time() - t)}, base_path)
    rows["base"] = load_json(base_path)
    print(f"base: {rows['base']}", flush=True)
    names = list(CONFIGS) if a.ablation else (a.configs.split(",") if a.configs else ["embedtune"])
    for name in names:
        if name in rows: continue
        rows[name] = run_config(name, CONFIGS[name], dss, [c.page_content for c in splits["train"]], claims, qrels, texts, out, seen)
        save_json(list(rows.values()), res_path)
    import pandas as pd
    df = pd.DataFrame(list(rows.values())).set_index("config")
    b = df.loc["base"]
    for k in METRICS: df[f"Δ{k}"] = (df[k] - b[k]).round(4)
    cols = [c for c in ["round_trip", "negatives", "guide", "epochs", "batch_size", "lr", "dropped", "train_rows", "val_before",
                        "val_after", *METRICS, "Δndcg@10", "Δrecall@100", "seen ndcg@10", "unseen ndcg@10", "train_s", "eval_s"] if c in df]
    print(df[cols].to_markdown())

if __name__ == "__main__": main()
