"""The retriever a run hands over, checked on queries the run never saw: SciFact as a folder of 5,183 text files.

    .venv/bin/python bench/handover.py                  # ~30-40 min on 2 cores (most of it encoding ~18,000 chunks)
    .venv/bin/python bench/handover.py --labelled 50 --others 300

Protocol. Each SciFact abstract (title and text) becomes one text file; `--labelled` claims (seeded, seed 0) become the
run's `eval_queries`, each labelled with the files of its abstracts; `--others` different claims are held back. The
pipeline runs on the folder with its defaults otherwise (`rag` off): it chooses a retriever on the labelled claims and
saves it to `retriever/`. Then the held-back claims are ranked twice over every chunk: by the retriever loaded with
`load_retriever` in a new Python process, and by the same retriever built directly from the run's own pieces
(`make_retriever` on the run's chunks and models, the evaluation's code path). nDCG@10 per claim (every chunk of a
relevant abstract counts as relevant); the two must agree within 0.001. Results: bench/results/handover.json.
"""
import argparse, json, random, subprocess, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).parent))
from devsuite import load_domain

RESULTS = Path(__file__).parent/"results"/"handover.json"


def write_folder(d: dict, folder: Path):
    "Each document of domain `d` as `<id>.txt` in `folder` (written once)."
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.txt"))) == len(d["corpus"]): return
    for i, text in d["corpus"].items(): (folder/f"{i}.txt").write_text(text + "\n", encoding="utf-8")


def write_queries(d: dict, qids: list[str], path: Path) -> Path:
    "`qids` of domain `d` as eval_queries lines, each relevant to the files of its documents."
    path.write_text("".join(json.dumps({"query": d["queries"][q], "relevant": sorted(f"{i}.txt" for i in d["qrels"][q])}) + "\n"
                            for q in qids), encoding="utf-8")
    return path


def using(run, name: str):
    "What `make_retriever` takes to rebuild the run's retriever `name` from its own pieces."
    from embedtune.evaluate import retriever_parts
    model, bm25 = retriever_parts(name)
    return [run.retrievers[model], "bm25"] if model and bm25 else run.retrievers[model] if model else "bm25"


LOADED = """import json, sys
from embedtune import load_retriever
r = load_retriever(sys.argv[1], k=10)
print(json.dumps({q: [i for i, _ in r.search(text)] for q, text in json.load(open(sys.argv[2])).items()}))"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labelled", type=int, default=50)
    ap.add_argument("--others", type=int, default=300)
    ap.add_argument("--out", default="runs/handover")
    a = ap.parse_args()
    from embedtune.evaluate import make_retriever, rank_metrics, read_eval_queries
    from embedtune.run import Run
    d, out = load_domain("scifact-dev"), Path(a.out)
    write_folder(d, out/"docs")
    qids = random.Random(0).sample(sorted(d["queries"]), a.labelled + a.others)
    labelled, others = write_queries(d, qids[:a.labelled], out/"labelled.jsonl"), write_queries(d, qids[a.labelled:], out/"others.jsonl")
    folder = out/f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    t = time.time()
    run = Run(sources=[str(out/"docs")], eval_queries=str(labelled), rag=False, out_dir=str(folder)).all()
    wall = time.time() - t
    use = run.recommended
    held = read_eval_queries(others, run.everything, min_queries=1)
    direct = make_retriever(run.everything, using(run, use), k=10)
    t = time.time()
    direct_top = {q: [c.metadata["id"] for c in direct.invoke(text)] for q, text in held["questions"].items()}
    direct_s = time.time() - t
    (out/"held.json").write_text(json.dumps(held["questions"]))
    t = time.time()
    loaded = subprocess.run([sys.executable, "-c", LOADED, str(folder/"retriever"), str(out/"held.json")], capture_output=True,
                            text=True, check=True)
    loaded_s = time.time() - t
    loaded_top = json.loads(loaded.stdout)
    nd = lambda tops: np.array([rank_metrics(tops[q], set(held["relevant_contexts"][q]), ks=(10,))["ndcg@10"] for q in held["questions"]])
    a_nd, b_nd = nd(loaded_top), nd(direct_top)
    from embedtune.evaluate import paired_ci
    m = run.metrics
    result = {"protocol": __doc__.split("Protocol. ")[1].split("Results:")[0].replace("\n", " ").strip(), "date": time.strftime("%Y-%m-%d"),
              "files": len(d["corpus"]), "chunks": len(run.everything), "labelled": a.labelled, "held_back": len(held["questions"]),
              "recommended": use, "verdict": m["verdict"]["reason"], "labelled_means": m["verdict"]["means"],
              "held_back_ndcg@10": {"loaded in a new process": round(float(a_nd.mean()), 4), "built directly": round(float(b_nd.mean()), 4)},
              "max_abs_diff_per_claim": float(np.abs(a_nd - b_nd).max()), "identical_top10": sum(loaded_top[q] == direct_top[q] for q in held["questions"]),
              "run_wall_s": round(wall), "step_s": m["timings"], "peak_memory_gb": m["peak_memory_gb"], "searched": m["searched"],
              "load_and_rank_s": round(loaded_s, 1), "direct_rank_s": round(direct_s, 1)}
    # how the labelled claims' choice holds on the held-back claims: every candidate, directly, on the same claims
    table = {}
    for cand in m["verdict"]["means"]:
        r = make_retriever(run.everything, using(run, cand), k=10)
        table[cand] = nd({q: [c.metadata["id"] for c in r.invoke(text)] for q, text in held["questions"].items()})
    result["held_back_by_candidate"] = {k: {"ndcg@10": round(float(v.mean()), 4), "vs recommended": [round(x, 4) for x in paired_ci(v, table[use])]}
                                        for k, v in table.items()}
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
