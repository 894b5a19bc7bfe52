"""Real-query gain with honest statistics: does fine-tuning on embedtune's questions help SciFact's expert claims?

    .venv/bin/python bench/quality.py --generate-only        # write (and cache) the questions; resumable
    .venv/bin/python bench/quality.py                        # the curve: 1, 2, 4, 8 questions per abstract, 3 seeds
    .venv/bin/python bench/quality.py --questions 4 --seeds 0  # one point, one seed

The "covered" protocol: a fixed, seeded sample of `--claims` dev claims (never shown to the writer, never the 8 that may
serve as style examples); every abstract relevant to them, plus as many random others, gets questions from the
package's own writer (`generate_questions`, the pipeline's defaults, `--max-questions` per abstract; a smaller count
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
from scifact import read_scifact, corpus_texts, first_chunks, style_claims, per_query_ndcg, ci95

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
    ap.add_argument("--out", default="runs/quality")
    a = ap.parse_args()
    counts, seeds = [int(x) for x in a.questions.split(",")], [int(x) for x in a.seeds.split(",")]
    from embedtune.llm import chat_model
    from embedtune.questions import build_dataset, generate_questions
    corpus, claims, qrels = read_scifact()
    sample, relevant, others = covered_sample(claims, qrels, corpus, a.claims)
    val_ids = others[:len(others) // 10]
    chunks = first_chunks(corpus, relevant + others)
    llm = chat_model(a.llm)
    t = time.time()
    gen = generate_questions(chunks, llm, max(counts))
    print(f"writing: {len(chunks)} abstracts ({len(relevant)} relevant to {len(sample)} claims, {len(others)} others), "
          f"{gen!r}, {time.time() - t:.0f} s; filter: {gen.screened!r}", flush=True)
    from embedtune.core import free_memory, load_json, save_json
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    written = sum(map(len, gen.questions.values()))
    writing = {"abstracts": len(chunks), "questions": written, "kept": written - len(gen.screened.dropped),
               "dropped": gen.screened.counts, "repaired": gen.screened.repaired, "failed_abstracts": len(gen.failures)}
    # 50 kept questions, drawn at random, to be read by hand: the filter's misses
    kept = [(cid, q) for cid, qs in gen.kept.items() for q in qs]
    (out/"kept_sample.txt").write_text("\n".join(f"{cid}\t{q}" for cid, q in random.Random(0).sample(kept, min(50, len(kept)))) + "\n")
    save_json(writing, out/"writing.json")
    print(f"writing: {writing}; 50 kept questions to read in {out/'kept_sample.txt'}")
    if a.generate_only: return
    from embedtune.train import fine_tune, load_model
    texts = corpus_texts(corpus)
    dids, qids = list(texts), sample
    base_file = out/"base.npy"
    if not base_file.exists():
        base = load_model()
        np.save(base_file, per_query_ndcg(encode(base, [claims[q] for q in qids]), encode(base, [texts[d] for d in dids]), qids, dids, qrels))
    base_nd = np.load(base_file)
    rows_file = out/"rows.json"
    rows = load_json(rows_file) if rows_file.exists() else {}
    for k in counts:
        g = generate_questions(chunks, llm, k, progress=False)  # all replies cached by the run above
        is_val = lambda c: c.metadata["doc_id"] in set(val_ids)
        train = build_dataset([c for c in chunks if not is_val(c)], g)
        val = build_dataset([c for c in chunks if is_val(c)], g)
        for s in seeds:
            name = f"q{k}_seed{s}"
            if name in rows: continue
            model = load_model()
            m = fine_tune(model, train, val, out/"models"/name, seed=s)
            nd = per_query_ndcg(encode(model, [claims[q] for q in qids]), encode(model, [texts[d] for d in dids]), qids, dids, qrels)
            rows[name] = {"questions_per_abstract": k, "seed": s, "train_pairs": m["train_pairs"],
                          "dropped": g.screened.counts if g.screened else {}, "train_s": m["train_seconds"],
                          "val_ndcg_before": round(m["val_before"].get("eval_val_cosine_ndcg@10", float("nan")), 4),
                          "val_ndcg_after": round(m["val_after"].get("eval_val_cosine_ndcg@10", float("nan")), 4),
                          "ndcg": nd.round(5).tolist()}
            save_json(rows, rows_file)
            d = nd - base_nd
            print(f"{name}: nDCG@10 {nd.mean():.4f} vs base {base_nd.mean():.4f}: {d.mean():+.4f} {ci95(nd, base_nd)}", flush=True)
            del model; free_memory()
    table = []
    for k in counts:
        done = [r for r in rows.values() if r["questions_per_abstract"] == k and r["seed"] in seeds]
        if not done: continue
        per_seed = [np.array(r["ndcg"]) for r in done]
        mean = np.mean(per_seed, axis=0)
        table.append({"questions_per_abstract": k, "seeds": [r["seed"] for r in done], "train_pairs": done[0]["train_pairs"],
                      "ndcg@10": round(float(mean.mean()), 4), "base_ndcg@10": round(float(base_nd.mean()), 4),
                      "diff": round(float((mean - base_nd).mean()), 4), "diff_ci95": ci95(mean, base_nd),
                      "per_seed_diff": [round(float((x - base_nd).mean()), 4) for x in per_seed],
                      "per_seed_ci95": [ci95(x, base_nd) for x in per_seed]})
        print(f"{k} per abstract, seeds {table[-1]['seeds']}: {table[-1]['diff']:+.4f} {table[-1]['diff_ci95']} "
              f"(per seed {table[-1]['per_seed_diff']})")
    save_json({"protocol": f"SciFact dev, covered: {len(qids)} sampled claims (seed 0), questions for the {len(relevant)} abstracts "
                           f"relevant to them and {len(others)} random others; the pipeline's default writer and recipe; "
                           "nDCG@10 per claim against the whole corpus (5,183 abstracts); paired bootstrap 95 % CI over claims",
               "date": time.strftime("%Y-%m-%d"), "writing": writing, "rows": table}, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
