"""Which retriever to hand over, measured on the dev suite: BM25, MiniLM, mpnet, each fused with BM25; weighted fusion;
and the rule that picks one from a few dozen labelled queries, judged on the queries it did not see.

    .venv/bin/python bench/retrievers.py                   # rank (cached in runs/retrievers/), then every table
    .venv/bin/python bench/retrievers.py --domains cranfield,demo
    .venv/bin/python bench/retrievers.py --timing          # encode time per 1,000 chunks, MiniLM then mpnet, back to back

Protocol. Every query of each domain (`devsuite.py`) is ranked against the whole corpus by each ranker (top 100: BM25
from embedtune's `BM25Retriever`; MiniLM and mpnet by cosine similarity of normalised vectors); hybrids fuse two top-100
lists by reciprocal rank fusion (embedtune's `rrf`, c = 60). nDCG@10 and Recall@100 per query (embedtune's
`rank_metrics`, every judged document relevant), differences with paired bootstrap 95 % CIs over queries (`paired_ci`).

Weighted fusion: RRF with weight w on the dense list and 1 - w on BM25's, and a convex combination of min-max
normalised scores; w is chosen on `--labelled` random queries (as a user with that many labelled queries would) and
scored on the others, over `--splits` random splits; each query's held-out gain over plain RRF is averaged over the
splits that held it out, then bootstrapped.

The rule: `embedtune.evaluate.verdict` and the alternatives it was chosen against are applied to the candidates'
scores on `--labelled` random queries and judged by the chosen retriever's nDCG@10 on the held-out queries (same splits).
Results: bench/results/retrievers.json.
"""
import argparse, gzip, json, random, shutil, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).parent))
from devsuite import DOMAINS, load_domain

RESULTS = Path(__file__).parent/"results"/"retrievers.json"
MODELS = {"MiniLM": "minilm", "mpnet": "mpnet"}  # display name: embedtune's name for the packaged model
C = 60


def save_gz(obj, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f: json.dump(obj, f)


def load_gz(path: Path):
    with gzip.open(path, "rt", encoding="utf-8") as f: return json.load(f)


def fingerprint(model, texts: list[str]) -> str:
    "A key for `model`'s vectors of `texts`: its weights, maximum length and torch version, and the texts."
    import hashlib, torch
    h = hashlib.blake2b(f"{type(model).__name__} {model.max_seq_length} {torch.__version__}".encode(), digest_size=16)
    for name, t in model.state_dict().items(): h.update(name.encode()); h.update(t.detach().cpu().contiguous().numpy().tobytes())
    for x in texts: h.update(x.encode()); h.update(b"\0")
    return h.hexdigest()


def encode_corpus(model, texts: list[str], cache: Path | None = None, part: int = 1024):
    "Normalised document vectors of `texts`; with `cache`, kept there `part` texts at a time, so a stopped encoding resumes where it was."
    show = len(texts) > 2000
    if cache is None: return model.encode_document(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=show)
    folder = cache/fingerprint(model, texts)
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, len(texts), part):
        f = folder/f"{start:07d}.npy"
        if not f.exists():
            v = model.encode_document(texts[start:start + part], batch_size=32, normalize_embeddings=True, show_progress_bar=show)
            np.save(folder/"part.tmp.npy", v); (folder/"part.tmp.npy").replace(f)  # whole parts only, even if stopped mid-write
            if show: print(f"encoded {min(start + part, len(texts))} of {len(texts)} (kept in {folder})", flush=True)
        parts.append(np.load(f))
    shutil.rmtree(folder)  # done: the parts served only to resume
    return np.concatenate(parts)


def dense_ranking(model, d: dict, depth: int = 100, cache: Path | None = None) -> dict:
    "Top `depth` (ids, cosine) per query for `model` (a sentence-transformers model, or a name `load_model` takes), and the encode time."
    from embedtune.train import load_model
    model = load_model(model) if isinstance(model, str) else model
    dids, qids = list(d["corpus"]), list(d["queries"])
    t = time.time()
    D = encode_corpus(model, [d["corpus"][i] for i in dids], cache)
    secs = time.time() - t
    Q = model.encode_query([d["queries"][q] for q in qids], batch_size=32, normalize_embeddings=True)
    out = {}
    for start in range(0, len(qids), 256):
        S = Q[start:start + 256] @ D.T
        top = np.argsort(-S, axis=1, kind="stable")[:, :depth + 1]  # equal scores (identical texts) in corpus order, on any CPU
        for row, q in enumerate(qids[start:start + 256]):
            ranked = [(dids[j], float(S[row, j])) for j in top[row] if not (d["skip_self"] and dids[j] == q)][:depth]
            out[q] = ranked
    return {"ranking": out, "encode_s": round(secs, 1), "docs": len(dids)}


def bm25_ranking(d: dict, depth: int = 100) -> dict:
    "Top `depth` (ids, BM25 score) per query from embedtune's BM25Retriever."
    from embedtune.evaluate import BM25Retriever, corpus_documents
    t = time.time()
    bm25 = BM25Retriever(docs=corpus_documents(d["corpus"]), k=depth + 1)
    secs = time.time() - t
    out = {}
    for q, text in d["queries"].items():
        idx, sc = bm25._index.retrieve(bm25._tokens([text]), k=len(bm25.docs), show_progress=False)  # all: ties cut nowhere
        order = np.lexsort((idx[0], -sc[0]))[:depth + 1]  # equal scores in corpus order, whatever bm25s's top-k returns
        ranked = [(bm25.docs[i].metadata["id"], float(s)) for i, s in zip(idx[0][order], sc[0][order])]
        out[q] = [(i, s) for i, s in ranked if not (d["skip_self"] and i == q)][:depth]
    return {"ranking": out, "index_s": round(secs, 1), "docs": len(d["corpus"])}


def rankings(domain: str, cache: Path) -> tuple[dict, dict]:
    "The domain and its rankers' top-100 lists (computed once, kept in `cache`)."
    d = load_domain(domain)
    ranks = {}
    for name, fn in [("BM25", lambda: bm25_ranking(d))] + [(m, lambda m=m: dense_ranking(MODELS[m], d)) for m in MODELS]:
        f = cache/domain/f"{name}.json.gz"
        if not f.exists():
            print(f"{domain}: ranking with {name} ({len(d['corpus']):,} documents, {len(d['queries']):,} queries)", flush=True)
            save_gz(fn(), f)
        ranks[name] = load_gz(f)
    return d, ranks


def fuse(lists: list[list], weights=None, how: str = "rrf", depth: int = 100) -> list[str]:
    "Fused ids of several (id, score) lists: weighted reciprocal rank fusion, or a weighted sum of min-max normalised scores."
    weights = weights or [1.0] * len(lists)
    score = {}
    for w, ranked in zip(weights, lists):
        if how == "rrf":
            for r, (i, _) in enumerate(ranked, 1): score[i] = score.get(i, 0.0) + w / (C + r)
        else:
            s = np.array([x for _, x in ranked]) if ranked else np.zeros(0)
            lo, span = (s.min(), np.ptp(s) or 1.0) if len(s) else (0, 1)
            for (i, _), x in zip(ranked, s): score[i] = score.get(i, 0.0) + w * (x - lo) / span
    return sorted(score, key=score.get, reverse=True)[:depth]


def per_query(ids_of: dict, d: dict) -> dict[str, np.ndarray]:
    "nDCG@10 and Recall@100 of each query (in `d`'s order) from {qid: ranked ids}."
    from embedtune.evaluate import rank_metrics
    m = [rank_metrics(ids_of[q], d["qrels"][q], ks=(100,)) for q in d["queries"]]
    return {"ndcg@10": np.array([x["ndcg@10"] for x in m]), "recall@100": np.array([x["recall@100"] for x in m])}


def ci(a, b) -> list[float]:
    from embedtune.evaluate import paired_ci
    m, lo, hi = paired_ci(a, b)
    return [round(m, 4), round(lo, 4), round(hi, 4)]


def candidates(d: dict, ranks: dict) -> dict[str, dict]:
    "Per-query scores of BM25, each model, and each model fused with BM25 (RRF)."
    ids = lambda name: {q: [i for i, _ in ranks[name]["ranking"][q]] for q in d["queries"]}
    out = {"BM25": per_query(ids("BM25"), d)}
    for m in MODELS:
        out[m] = per_query(ids(m), d)
        out[f"{m} + BM25"] = per_query({q: fuse([ranks[m]["ranking"][q], ranks["BM25"]["ranking"][q]]) for q in d["queries"]}, d)
    return out


def table(domain: str, d: dict, ranks: dict, cands: dict) -> list[dict]:
    "One row per retriever: means, and paired differences from MiniLM (the default base) and from MiniLM + BM25."
    rows = []
    for name, s in cands.items():
        row = {"domain": domain, "retriever": name, "queries": len(d["queries"]), "ndcg@10": round(float(s["ndcg@10"].mean()), 4),
               "recall@100": round(float(s["recall@100"].mean()), 4)}
        if name != "MiniLM": row["vs MiniLM"] = ci(s["ndcg@10"], cands["MiniLM"]["ndcg@10"])
        if name not in ("MiniLM", "MiniLM + BM25"): row["vs MiniLM + BM25"] = ci(s["ndcg@10"], cands["MiniLM + BM25"]["ndcg@10"])
        if name in MODELS: row["hybrid gain"] = ci(cands[f"{name} + BM25"]["ndcg@10"], s["ndcg@10"])
        rows.append(row)
    return rows


def splits(n: int, labelled: int, count: int, seed: int = 0) -> list[np.ndarray]:
    "`count` random boolean masks of `labelled` queries out of `n`."
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        mask = np.zeros(n, dtype=bool); mask[rng.choice(n, size=min(labelled, n - 2), replace=False)] = True
        out.append(mask)
    return out


def held_out_mean(score_of_split: list[np.ndarray], masks: list[np.ndarray]) -> np.ndarray:
    "Each query's mean score over the splits that held it out (NaN for a query never held out)."
    total, count = np.zeros(len(masks[0])), np.zeros(len(masks[0]))
    for s, m in zip(score_of_split, masks): total[~m] += s[~m]; count[~m] += 1
    return total / np.maximum(count, 1)


def weighted_fusion(domain: str, d: dict, ranks: dict, labelled: int, n_splits: int) -> list[dict]:
    "Held-out gain over plain RRF when the fusion weight is chosen on `labelled` queries, for each model and method."
    grid = [round(float(w), 1) for w in np.arange(0.1, 1.0, 0.1)]
    rows = []
    for m in MODELS:
        lists = {q: [ranks[m]["ranking"][q], ranks["BM25"]["ranking"][q]] for q in d["queries"]}
        plain = per_query({q: fuse(l) for q, l in lists.items()}, d)["ndcg@10"]
        for how in ("rrf", "scores"):
            by_w = {w: per_query({q: fuse(l, [w, 1 - w], how) for q, l in lists.items()}, d)["ndcg@10"] for w in grid}
            masks = splits(len(plain), labelled, n_splits)
            chosen = [max(grid, key=lambda w: by_w[w][mask].mean()) for mask in masks]
            held = held_out_mean([by_w[w] for w in chosen], masks)
            best_w = max(grid, key=lambda w: by_w[w].mean())
            rows.append({"domain": domain, "model": m, "fusion": "weighted RRF" if how == "rrf" else "min-max scores",
                         "labelled": labelled, "splits": n_splits, "weights_chosen": sorted(set(chosen)),
                         "held_out_ndcg@10": round(float(held.mean()), 4), "rrf_ndcg@10": round(float(plain.mean()), 4),
                         "held_out_gain_vs_rrf": ci(held, plain),
                         "oracle_weight": best_w, "oracle_gain_vs_rrf": round(float(by_w[best_w].mean() - plain.mean()), 4)})
    return rows


def simple_rank(name: str) -> tuple:
    "How simple a candidate is (smaller: simpler): fewer rankers, then no model, then the smaller model."
    parts = name.split(" + ")
    return (len(parts), "BM25" not in parts, "mpnet" in parts)


def rule_choices(cands: dict, mask: np.ndarray) -> dict[str, str]:
    "What each candidate rule picks from the labelled queries `mask`."
    from embedtune.evaluate import paired_ci, verdict
    nd = {k: v["ndcg@10"][mask] for k, v in cands.items()}
    means = {k: v.mean() for k, v in nd.items()}
    best = max(means, key=means.get)
    by_simplicity = sorted(nd, key=simple_rank)
    def simplest(ok) -> str: return next(k for k in by_simplicity if k == best or ok(paired_ci(nd[k], nd[best])))
    return {"best mean": best,
            "simplest whose CI vs the best reaches 0": simplest(lambda c: c[2] >= 0),
            "simplest shown within 0.01 of the best": simplest(lambda c: c[1] > -0.01),
            "always MiniLM + BM25": "MiniLM + BM25",
            "always MiniLM": "MiniLM",
            "best mean; a hybrid must beat its dense model (CI above 0)": max(
                (k for k in nd if not k.endswith(" + BM25") or paired_ci(nd[k], nd[k.removesuffix(" + BM25")])[1] > 0), key=means.get),
            "best mean of the hybrids": max((k for k in nd if k.endswith(" + BM25")), key=means.get),
            "best mean; one without BM25 must beat the best hybrid (CI above 0)": best if best.endswith(" + BM25") or paired_ci(
                nd[best], nd[max((k for k in nd if k.endswith(" + BM25")), key=means.get)])[1] > 0 else
                max((k for k in nd if k.endswith(" + BM25")), key=means.get),
            "embedtune's verdict": verdict(_frame(nd))["use"]}


def _frame(nd: dict):
    "Per-query nDCG@10 of each candidate as compare_retrievers(..., per_query=True) gives them."
    import pandas as pd
    return pd.concat({k: pd.DataFrame({"ndcg@10": v}) for k, v in nd.items()}, names=["retriever", "question"])


def rules(domain: str, cands: dict, labelled: int, n_splits: int) -> list[dict]:
    "Each rule's held-out nDCG@10 (its choice per split, scored on the queries it did not see), and how often it chose what."
    masks = splits(len(cands["BM25"]["ndcg@10"]), labelled, n_splits, seed=1)
    picks = [rule_choices(cands, m) for m in masks]
    oracle = max(cands, key=lambda k: cands[k]["ndcg@10"].mean())
    ref = held_out_mean([cands[oracle]["ndcg@10"]] * len(masks), masks)
    rows = []
    for rule in picks[0]:
        chosen = [p[rule] for p in picks]
        held = held_out_mean([cands[c]["ndcg@10"] for c in chosen], masks)
        rows.append({"domain": domain, "rule": rule, "labelled": labelled, "splits": n_splits,
                     "held_out_ndcg@10": round(float(held.mean()), 4), "vs best on all queries": ci(held, ref),
                     "best on all queries": oracle, "chose": {c: chosen.count(c) for c in sorted(set(chosen))}})
    return rows


def timing(domains: list[str], n: int = 500):
    "Seconds to encode `n` documents of each domain with each model, back to back in this process (batch 32)."
    from embedtune.train import load_model
    out = []
    for domain in domains:
        d = load_domain(domain)
        texts = random.Random(0).sample(list(d["corpus"].values()), min(n, len(d["corpus"])))
        chars = float(np.mean([len(t) for t in texts]))
        for m, name in MODELS.items():
            model = load_model(name)
            model.encode_document(texts[:32], batch_size=32)  # warm-up
            t = time.time()
            model.encode_document(texts, batch_size=32, normalize_embeddings=True)
            secs = time.time() - t
            out.append({"domain": domain, "model": m, "documents": len(texts), "mean_chars": round(chars),
                        "max_seq_length": model.max_seq_length, "s_per_1000": round(secs * 1000 / len(texts), 1)})
            print(out[-1], flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--labelled", default="20,50", help="labelled queries a user has (fusion weights, the rule): one or more counts")
    ap.add_argument("--splits", type=int, default=200)
    ap.add_argument("--timing", action="store_true", help="only time encoding (run on a quiet machine)")
    ap.add_argument("--cache", default="runs/retrievers")
    a = ap.parse_args()
    domains = a.domains.split(",")
    earlier = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if a.timing:
        earlier["encode_time"] = {"protocol": "500 random documents per domain (all of a smaller one), batch 32, torch float32 on "
                                              "this machine's 2 cores, MiniLM then mpnet back to back in one process, quiet machine",
                                  "date": time.strftime("%Y-%m-%d"), "rows": timing(domains)}
        RESULTS.write_text(json.dumps(earlier, indent=1) + "\n")
        return
    keep = lambda key: [r for r in earlier.get(key, []) if r["domain"] not in domains]
    out = {k: keep(k) for k in ("retrievers", "weighted_fusion", "rules")}
    for domain in domains:
        d, ranks = rankings(domain, Path(a.cache))
        cands = candidates(d, ranks)
        out["retrievers"] += table(domain, d, ranks, cands)
        for n in map(int, a.labelled.split(",")):
            out["weighted_fusion"] += weighted_fusion(domain, d, ranks, n, a.splits)
            out["rules"] += rules(domain, cands, n, a.splits)
        for r in out["retrievers"][-5:]: print(r, flush=True)
        for r in out["weighted_fusion"][-4:]: print(r, flush=True)
        for r in out["rules"][-9:]: print(r, flush=True)
    order = {name: i for i, name in enumerate(DOMAINS)}
    for k in out: out[k].sort(key=lambda r: order[r["domain"]])
    RESULTS.write_text(json.dumps({
        "protocol": __doc__.split("Protocol. ")[1].split("Results:")[0].replace("\n", " ").strip(),
        "date": time.strftime("%Y-%m-%d"), **out, **({"encode_time": earlier["encode_time"]} if "encode_time" in earlier else {})},
        indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
