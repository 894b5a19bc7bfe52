"""Real-query gain with honest statistics: does fine-tuning on embedtune's questions help SciFact's expert claims?

    .venv/bin/python bench/quality.py --generate-only        # write (and cache) the questions; resumable
    .venv/bin/python bench/quality.py                        # the curve: 1, 2, 4, 8 questions per abstract, 3 seeds
    .venv/bin/python bench/quality.py --questions 4 --seeds 0  # one point, one seed
    .venv/bin/python bench/quality.py --questions 4 --recipe negatives  # the same with guarded hard negatives

The "covered" protocol: a fixed, seeded sample of `--claims` dev claims (never shown to the writer, never the 8 that may
serve as style examples); every abstract relevant to them, plus as many random others, gets questions from the
package's own writer (`generate_questions`, the pipeline's defaults, the largest of `--questions` per abstract; a smaller count
reuses the first replies from the cache). The pipeline's default recipe (MultipleNegativesRankingLoss in
MatryoshkaLoss, 3 epochs, batch 16, lr 2e-5) trains the packaged all-MiniLM-L6-v2 on all relevant abstracts and 90 %
of the others; the remaining 10 % validate. Every model is judged on the sampled claims against the whole corpus
(5,183 abstracts): nDCG@10 per claim, and its difference from the base model with a paired bootstrap 95 % interval
over claims, per seed and for the claim-wise mean over seeds. Rows accumulate in runs/quality/rows.json (a finished
point is not run again); the table goes to bench/results/quality.json.
"""
import argparse, json, random, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).parent))
from scifact import read_scifact, corpus_texts, first_chunks, style_claims, ci95

RESULTS = Path(__file__).parent/"results"/"quality.json"


def covered_sample(claims, qrels, corpus, n_claims=300, seed=0) -> tuple[list[str], list[str], list[str]]:
    "Sampled claim ids, the abstracts relevant to them, and as many random other abstracts (all in a fixed order)."
    style = set(style_claims(claims, seed))
    rng = random.Random(seed)
    sample = sorted(rng.sample(sorted(set(claims) - style), n_claims))
    relevant = sorted({d for q in sample for d in qrels[q]} & set(corpus))
    others = rng.sample(sorted(set(corpus) - set(relevant)), len(relevant))
    return sample, relevant, others


def encode(model, texts: list[str]) -> np.ndarray:
    "Normalised embeddings, batch 32 (sentence-transformers sorts by length)."
    return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--claims", type=int, default=300, help="claims sampled for evaluation")
    ap.add_argument("--questions", default="1,2,4,8", help="questions per abstract: the points of the curve")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds")
    ap.add_argument("--llm", default="local")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--recipe", default="default", choices=["default", "negatives", "examples"],
                    help="negatives: a hard negative per pair (rank 10-50, 5 %% margin: the false-negative guard); "
                         "examples: the 8 style claims shown to the writer as examples of query style")
    ap.add_argument("--out", default="runs/quality")
    a = ap.parse_args()
    counts, seeds = [int(x) for x in a.questions.split(",")], [int(x) for x in a.seeds.split(",")]
    from embedtune.llm import chat_model
    from embedtune.questions import generate_questions
    from embedtune.dataset import build_dataset
    corpus, claims, qrels = read_scifact()
    sample, relevant, others = covered_sample(claims, qrels, corpus, a.claims)
    val_ids = others[:len(others) // 10]
    chunks = first_chunks(corpus, relevant + others)
    llm = chat_model(a.llm)
    t = time.time()
    style = {"examples": [claims[q] for q in style_claims(claims)]} if a.recipe == "examples" else {}
    gen = generate_questions(chunks, llm, max(counts), **style)
    print(f"writing: {len(chunks)} abstracts ({len(relevant)} relevant to {len(sample)} claims, {len(others)} others), "
          f"{gen!r}, {time.time() - t:.0f} s; filter: {gen.screened!r}", flush=True)
    from embedtune.core import free_memory, load_json, save_json
    from embedtune.evaluate import rank_metrics
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    written = sum(map(len, gen.questions.values()))
    writing = {"abstracts": len(chunks), "questions": written, "kept": written - len(gen.screened.dropped),
               "dropped": gen.screened.counts, "repaired": gen.screened.repaired, "failed_abstracts": len(gen.failures)}
    # 50 kept questions, drawn at random, to be read by hand: the filter's misses
    kept = [(cid, q) for cid, qs in gen.kept.items() for q in qs]
    (out/f"kept_sample{'_examples' if style else ''}.txt").write_text("\n".join(f"{cid}\t{q}" for cid, q in random.Random(0).sample(kept, min(50, len(kept)))) + "\n")
    save_json(writing, out/f"writing{'_examples' if style else ''}.json")
    print(f"writing: {writing}; 50 kept questions to read in {out/'kept_sample.txt'}")
    if a.generate_only: return
    from embedtune.train import fine_tune, load_model, mine_negatives
    from embedtune.dataset import to_pairs
    from embedtune.evaluate import BM25Retriever, corpus_documents, rrf
    texts = corpus_texts(corpus)
    dids, qids = list(texts), sample
    def dense(model) -> list[list[str]]:  # each sampled claim's top 100 abstracts of the whole corpus
        top = np.argsort(-(encode(model, [claims[q] for q in qids]) @ encode(model, [texts[d] for d in dids]).T), axis=1)[:, :100]
        return [[dids[j] for j in row] for row in top]
    def scores(ranked) -> dict:  # per claim nDCG@10 and Recall@100, embedtune's rank_metrics
        m = [rank_metrics(r, qrels[q], ks=(100,)) for q, r in zip(qids, ranked)]
        return {"ndcg": [round(x["ndcg@10"], 5) for x in m], "recall100": [round(x["recall@100"], 5) for x in m]}
    fused = lambda a, b: [rrf([x, y])[:100] for x, y in zip(a, b)]
    fixed_file = out/"fixed.json"  # base, BM25 and their hybrid: the same for every recipe
    if not fixed_file.exists():
        bm25 = BM25Retriever(docs=corpus_documents(texts), k=100)
        lexical = [[d.metadata["id"] for d in bm25.invoke(claims[q])] for q in qids]
        base_rank = dense(load_model())
        save_json({"base_rank": base_rank, "bm25_rank": lexical, "base": scores(base_rank), "BM25": scores(lexical),
                   "base + BM25": scores(fused(base_rank, lexical))}, fixed_file)
    fixed = load_json(fixed_file)
    rows_file = out/"rows.json"
    rows = load_json(rows_file) if rows_file.exists() else {}
    base_nd = np.array(fixed["base"]["ndcg"])
    for k in counts:
        parts = {"train": [c for c in chunks if c.metadata["doc_id"] not in set(val_ids)],
                 "val": [c for c in chunks if c.metadata["doc_id"] in set(val_ids)]}
        gens = {p: generate_questions(cs, llm, k, progress=False, **style) for p, cs in parts.items()}  # cached by the run above
        train, val = (build_dataset(parts[p], gens[p]) for p in ("train", "val"))
        g = gens["train"]
        for s in seeds:
            name = f"q{k}_seed{s}" + ("" if a.recipe == "default" else f"_{a.recipe}")
            if name in rows: continue
            pairs = to_pairs(train)
            if a.recipe == "negatives": pairs = mine_negatives(pairs, load_model(), corpus=list(train["corpus"].values()))
            model = load_model()
            m = fine_tune(model, pairs, val, out/"models"/name, seed=s)
            ranked = dense(model)
            rows[name] = {"recipe": a.recipe, "questions_per_abstract": k, "seed": s, "train_pairs": m["train_pairs"],
                          "dropped": g.screened.counts if g.screened else {}, "train_s": m["train_seconds"],
                          "val_ndcg_before": round(m["val_before"].get("eval_val_cosine_ndcg@10", float("nan")), 4),
                          "val_ndcg_after": round(m["val_after"].get("eval_val_cosine_ndcg@10", float("nan")), 4),
                          "fine-tuned": scores(ranked), "fine-tuned + BM25": scores(fused(ranked, fixed["bm25_rank"]))}
            save_json(rows, rows_file)
            nd = np.array(rows[name]["fine-tuned"]["ndcg"])
            print(f"{name}: nDCG@10 {nd.mean():.4f} vs base {base_nd.mean():.4f}: {nd.mean() - base_nd.mean():+.4f} {ci95(nd, base_nd)}", flush=True)
            del model; free_memory()
    mean = lambda xs: round(float(np.mean(xs)), 4)
    table = [{"retriever": name, "ndcg@10": mean(fixed[name]["ndcg"]), "recall@100": mean(fixed[name]["recall100"]),
              "diff_vs_base": mean(np.subtract(fixed[name]["ndcg"], base_nd)), "diff_ci95": ci95(fixed[name]["ndcg"], base_nd)}
             for name in ("base", "BM25", "base + BM25")]
    for recipe, k in sorted({(r.get("recipe", "default"), r["questions_per_abstract"]) for r in rows.values()}):
        done = [r for r in rows.values() if (r.get("recipe", "default"), r["questions_per_abstract"]) == (recipe, k)]
        for kind, ref in (("fine-tuned", "base"), ("fine-tuned + BM25", "base + BM25")):
            per_seed = [np.array(r[kind]["ndcg"]) for r in done]
            nd, ref_nd = np.mean(per_seed, axis=0), np.array(fixed[ref]["ndcg"])
            table.append({"retriever": f"{kind}, {k} q/abstract" + ("" if recipe == "default" else f", {recipe}"),
                          "recipe": recipe, "questions_per_abstract": k, "seeds": [r["seed"] for r in done],
                          "train_pairs": done[0]["train_pairs"], "train_s": [r["train_s"] for r in done],
                          "ndcg@10": mean(nd), "recall@100": mean([r[kind]["recall100"] for r in done]),
                          "compared_with": ref, "diff": mean(nd - ref_nd), "diff_ci95": ci95(nd, ref_nd),
                          "diff_vs_base": mean(nd - base_nd), "diff_vs_base_ci95": ci95(nd, base_nd),
                          "per_seed_diff": [mean(x - ref_nd) for x in per_seed], "per_seed_ci95": [ci95(x, ref_nd) for x in per_seed]})
    for r in table:
        extra = f"vs {r['compared_with']} {r['diff']:+.4f} {r['diff_ci95']}, per seed {r['per_seed_diff']}" if "compared_with" in r else \
                f"vs base {r['diff_vs_base']:+.4f} {r['diff_ci95']}"
        print(f"{r['retriever']:<32} nDCG@10 {r['ndcg@10']:.4f}  R@100 {r['recall@100']:.4f}  {extra}")
    # rows of earlier runs whose per-claim scores are not here (another machine) stay in the table, marked as such
    earlier = load_json(RESULTS) if RESULTS.exists() else {}
    names = {r["retriever"] for r in table}
    table += [dict(r, carried_from=r.get("carried_from", earlier.get("date"))) for r in earlier.get("rows", []) if r["retriever"] not in names]
    writing = {**earlier.get("writing", {}), **{p.stem: load_json(p) for p in sorted(out.glob("writing*.json"))}}
    save_json({"protocol": f"SciFact dev, covered: {len(qids)} sampled claims (seed 0), questions for the {len(relevant)} abstracts "
                           f"relevant to them and {len(others)} random others; the pipeline's default writer and recipe; "
                           "nDCG@10 and Recall@100 per claim against the whole corpus (5,183 abstracts); fine-tuned rows average "
                           "each claim over the seeds; paired bootstrap 95 % CI over claims; hybrids: reciprocal rank fusion (c=60) "
                           "of the top 100 of each", "date": time.strftime("%Y-%m-%d"),
               "writing": writing, "rows": table}, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
