"""Does fine-tuning on embedtune's synthetic questions help real queries? One recipe, every domain of the dev suite.

    .venv/bin/python bench/write_questions.py --domains cranfield,demo                 # once: the questions (committed)
    .venv/bin/python bench/write_questions.py --domains scifact-dev,arguana --covering 300
    .venv/bin/python bench/write_questions.py --domains demo --llm local-1.5b --tag 1.5b   # the bigger writer (make local-1.5b)
    .venv/bin/python bench/quality.py --recipes default --domains cranfield,demo --seeds 0,1,2
    .venv/bin/python bench/quality.py --recipes default,gentle --domains cranfield --seeds 0 --coverage 0.1,0.25,0.5,1
    .venv/bin/python bench/quality.py --table                                          # print the table only
    .venv/bin/python bench/quality.py --markdown                                       # the README's tables of every recipe

Protocol. Per domain (`devsuite.py`), the real queries judged: cranfield and demo all of theirs, scifact-dev and arguana
the 300 of the covered protocol (`devsuite.covered`, seed 0: questions were written for the documents relevant to them
and as many others). The training questions are those kept in bench/questions/ (the package's writer,
Qwen2.5-Coder-0.5B, or the recipe's "writer", and the package's filter), for a seeded share `--coverage` of the units
written about (coverage 1: all). all-MiniLM-L6-v2 (or the recipe's "model", then compared with that model untrained) is
fine-tuned with the recipe (MultipleNegativesRankingLoss in MatryoshkaLoss, batch 16, the pipeline's `fine_tune`; no
validation), once per seed. A recipe whose writer saw `examples` (the domain's style queries as query_examples) is
judged without them, as is its reference. Every model ranks the whole corpus for each query (cosine of normalised
vectors; arguana without the query's own id); BM25 and the hybrids (reciprocal rank fusion, c = 60, top 100 of each) as
in bench/retrievers.py; equal scores (the demo and arguana hold identical texts under different ids) rank in corpus order,
and on those two a row scored before that rule, or with other package versions than its reference, is marked
(`other_stack_seeds`, ‡ in `--markdown`). WiSE-FT rows interpolate the weights of the base and the fine-tuned model, θ = (1 - α)·θ_base +
α·θ_fine-tuned, no training. nDCG@10 and Recall@100 per query; a recipe's rows average each query over its seeds;
differences from the base (and from base + BM25 for hybrids) with paired bootstrap 95 % CIs over queries. Per-query
scores accumulate in bench/results/quality-rows.json.gz (committed: a finished point is not run again, a point stopped
after its fine-tuned model was scored scores only its WiSE-FT rows, from the model saved in runs/, a point stopped after
training is scored from that model, a stopped corpus encoding resumes from the parts kept in runs/quality/vectors/ (mpnet
takes hours on a large corpus with 2 cores), and a later session's seeds average with it); the table goes to
bench/results/quality.json, where a row whose per-query scores are not at hand stays as it was. Each domain's untrained
references (per-query scores; BM25's top 100 takes seconds and is not kept) go to bench/results/quality-fixed/ (committed:
no later machine ranks a corpus with an untrained model again).
"""
import argparse, functools, gzip, json, random, sys, time
from pathlib import Path
import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).parent))
from devsuite import DOMAINS, covered, load_domain, style_queries
from retrievers import bm25_ranking, ci, dense_ranking, fuse, per_query
from write_questions import WRITER, read_questions

RESULTS = Path(__file__).parent/"results"/"quality.json"
ROWS = RESULTS.with_name("quality-rows.json.gz")  # per-query scores of every trained point
FIXED = RESULTS.with_name("quality-fixed")  # each domain's untrained references, kept: mpnet ranks SciFact's 5,183 abstracts in ~50 min
RECIPES = {  # fine_tune's arguments; "freeze": the embeddings and the first N transformer layers stay as they are; "lora": a LoRA
    # update of that rank on attention's query and value, merged into the weights after training (written here: transformers 5.24
    # needs peft >= 0.22, which the package index lacks); "teacher": MarginMSE on all-mpnet-base-v2's margins between the positive
    # and a negative MiniLM ranks 10-50 (GPL's recipe with a bi-encoder teacher: no cross-encoder ships in a PyPI package); "guide": GISTEmbedLoss
    # with that model as guide; "lexical": the teacher's margins averaged with BM25's (SPAR's idea: a dense student that also learns
    # what keyword search knows), BM25's rescaled to the spread of the teacher's so that neither weighs more; "round_trip": only the
    # questions whose unit the base model ranks in the top k (consistency filtering); "model": a packaged model other than MiniLM
    "default": dict(epochs=3, lr=2e-5),
    "1 epoch": dict(epochs=1, lr=2e-5),
    "gentle": dict(epochs=1, lr=1e-5),
    "gentler": dict(epochs=1, lr=5e-6),
    "freeze 3": dict(epochs=3, lr=2e-5, freeze=3),
    "lora 16": dict(epochs=3, lr=1e-4, lora=16),
    "teacher": dict(epochs=1, lr=2e-5, teacher="mpnet"),
    "hybrid teacher": dict(epochs=1, lr=2e-5, teacher="mpnet", lexical=True),  # the margin: mpnet's and BM25's, each scaled to the same spread, averaged
    "guided": dict(epochs=1, lr=1e-5, guide="mpnet"),  # gentle, GISTEmbedLoss: in-batch passages mpnet rates above the answer are not pushed away
    "round trip 3": dict(epochs=1, lr=1e-5, round_trip=3),  # gentle, on the questions whose unit the base model ranks in its top 3
    "mpnet gentle": dict(epochs=1, lr=1e-5, model="mpnet"),  # gentle on all-mpnet-base-v2 itself, compared with mpnet untrained
    "hybrid teacher 1.5b": dict(epochs=1, lr=2e-5, teacher="mpnet", lexical=True, writer="1.5b"),  # on the 1.5B writer's questions
    # gentle on questions written in the style of the domain's 8 style queries (query_examples), judged without those 8
    "gentle 8 examples": dict(epochs=1, lr=1e-5, writer="0.5b-ex8", examples=8),
    # three mined negatives per question, a MarginMSE row each: three times the teacher's margins to learn from (GPL trains far longer)
    "hybrid teacher 3 negatives": dict(epochs=1, lr=2e-5, teacher="mpnet", lexical=True, negatives=3),
    # the questions of both writers for every unit (about 4 per unit): more and more varied questions, or the 1.5B's better ones?
    "hybrid teacher both writers": dict(epochs=1, lr=2e-5, teacher="mpnet", lexical=True, writer="0.5b+1.5b"),
    # the default with the training change that gained most alone (freeze 3: never below base on arguana and cranfield)
    "freeze 3 hybrid teacher 1.5b": dict(epochs=1, lr=2e-5, teacher="mpnet", lexical=True, writer="1.5b", freeze=3),
    # gentle 8 examples without the questions that restate their own passage (`restates`): a candidate reason for the filter
    "gentle 8 examples no restatements": dict(epochs=1, lr=1e-5, writer="0.5b-ex8", examples=8, restating=False),
}
WISE = (0.25, 0.5, 0.75)
STACK = ("torch", "sentence-transformers", "transformers", "bm25s", "PyStemmer")  # what decides a ranking besides the weights
TIES = "ties=corpus-order"  # equal scores ranked in corpus order (retrievers.py): before, numpy's and bm25s's sorts chose, per CPU
# where the untrained references moved with the tie rule (identical texts under several ids); cranfield's and scifact-dev's
# per-query scores were the same under both rules and both installs, so a row there is compared with its reference as it was
TIED = {"demo", "arguana"}


@functools.cache
def stack() -> str:
    "The installed versions of `STACK` (BM25's tokeniser and stemmer, the encoder's numerics) and the tie rule, as one string."
    from importlib.metadata import version
    return " ".join([*(f"{p}=={version(p)}" for p in STACK), TIES])


def judged(d: dict) -> list[str]:
    "The query ids a domain is judged on."
    return covered(d)[0] if d["name"] in ("scifact-dev", "arguana") else list(d["queries"])


def shown(d: dict) -> list[bool]:
    "Per judged query of `d`: is it one of the style queries a writer may be shown as an example?"
    style = set(style_queries(d))
    return [q in style for q in judged(d)]


def with_queries(d: dict, qids: list[str]) -> dict:
    return {**d, "queries": {q: d["queries"][q] for q in qids}, "qrels": {q: d["qrels"][q] for q in qids}}


def pairs_for(domain: str, coverage: float, writer: str, seed: int = 0):
    "Training pairs (question, the text `writer` read) for a seeded share `coverage` of the domain's units."
    from datasets import Dataset
    first, *others = writer.split("+")  # "0.5b+1.5b": each unit's questions from both writers (the same texts read)
    units = read_questions(domain, first)
    for other in others:
        for i, u in read_questions(domain, other).items():
            if i in units: units[i] = {**units[i], "questions": list(dict.fromkeys(units[i]["questions"] + u["questions"]))}
    ids = sorted(units)
    ids = sorted(random.Random(seed).sample(ids, round(coverage * len(ids)))) if coverage < 1 else ids
    rows = [(q, units[i]["text"]) for i in ids for q in units[i]["questions"]]
    return Dataset.from_dict({"anchor": [q for q, _ in rows], "positive": [p for _, p in rows]}), len(ids), len(units)


def restates(question: str, passage: str) -> bool:
    "Is `question` its own passage again, or most of it: at least 90 % of its words from the passage, covering half of the passage's words or more?"
    from embedtune.filter import _words  # the filter's own words: the rule is a candidate reason for it
    q, p = _words(question), set(_words(passage))
    return bool(q) and sum(w in p for w in q) >= 0.9 * len(q) and len(set(q) & p) >= 0.5 * len(p)


def margins(pairs, teacher: str, seed: int, lexical: bool = False, negatives: int = 1):
    "`pairs` with `negatives` each (MiniLM's ranks 10-50 among the positives, a row each) and the teacher's margin as label (`lexical`: averaged with BM25's)."
    from embedtune.distill import teacher_margins
    from embedtune.train import load_model, mine_negatives
    rows = mine_negatives(pairs, load_model(), corpus=sorted(set(pairs["positive"])), seed=seed, num_negatives=negatives)
    return teacher_margins(rows, load_model(teacher), bm25=lexical)


def consistent(pairs, model, k: int):
    "The pairs whose positive `model` ranks in its top `k` among all the positives for the question (the package's round trip)."
    from embedtune.train import training_pairs
    cid = {t: str(i) for i, t in enumerate(sorted(set(pairs["positive"])))}
    ds = {"questions": {str(i): q for i, q in enumerate(pairs["anchor"])}, "corpus": {c: t for t, c in cid.items()},
          "relevant_contexts": {str(i): [cid[p]] for i, p in enumerate(pairs["positive"])}}
    kept, counts = training_pairs(ds, model, round_trip_k=k)
    print(f"round trip top {k}: kept {counts['rows']} of {counts['questions']} questions", flush=True)
    return kept


def train(pairs, recipe: str, seed: int, out: Path):
    "all-MiniLM-L6-v2 (or the recipe's model) fine-tuned on `pairs` with `recipe` and `seed`; returns the model, seconds and the pairs trained on."
    from embedtune.train import fine_tune, load_model
    spec = dict(RECIPES[recipe])
    for k in ("writer", "examples", "restating"): spec.pop(k, None)  # what the recipe trains on and is judged on, not how
    model = load_model(spec.pop("model", None))
    if n := spec.pop("freeze", 0):
        auto = model[0].auto_model
        for p in list(auto.embeddings.parameters()) + [p for layer in auto.encoder.layer[:n] for p in layer.parameters()]: p.requires_grad = False
    if k := spec.pop("round_trip", 0): pairs = consistent(pairs, model, k)
    if r := spec.pop("lora", 0): add_lora(model, r, seed)
    t, used = time.time(), len(pairs)
    if teacher := spec.pop("teacher", None):  # MarginMSELoss
        pairs = margins(pairs, teacher, seed, spec.pop("lexical", False), spec.pop("negatives", 1))
    guide = load_model(spec.pop("guide")) if "guide" in spec else None
    fine_tune(model, pairs, None, out, epochs=spec["epochs"], lr=spec["lr"], seed=seed, guide=guide, disable_tqdm=True)
    if r: merge_lora(model)
    return model, time.time() - t, used


def attentions(model):
    "The self-attention block of each transformer layer of a BERT-style sentence-transformers `model`."
    return [layer.attention.self for layer in model[0].auto_model.encoder.layer]


class LoRALinear(torch.nn.Module):
    "A frozen linear layer plus a trainable low-rank update (B·A)·alpha/r, as in LoRA (Hu et al. 2021) and peft's defaults."
    def __init__(self, base: torch.nn.Linear, r: int, alpha: float, dropout: float = 0.1):
        super().__init__()
        self.base, self.scale, self.drop = base, alpha / r, torch.nn.Dropout(dropout)
        self.a = torch.nn.Parameter(torch.empty(r, base.in_features))
        torch.nn.init.kaiming_uniform_(self.a, a=5 ** 0.5)
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, r))  # B = 0: training starts from the base model
    def forward(self, x): return self.base(x) + (self.drop(x) @ self.a.T @ self.b.T) * self.scale


def add_lora(model, r: int, seed: int, targets=("query", "value")):
    "Freeze `model` and give each attention `targets` layer a rank-`r` LoRA update (alpha 2r); seeded."
    torch.manual_seed(seed)
    for p in model.parameters(): p.requires_grad = False
    for att in attentions(model):
        for t in targets: setattr(att, t, LoRALinear(getattr(att, t), r, 2 * r))


def merge_lora(model):
    "Fold each LoRA update into its base layer's weights, leaving a plain model (so WiSE-FT and saving work as usual)."
    for att in attentions(model):
        for t, m in list(att.named_children()):
            if isinstance(m, LoRALinear):
                m.base.weight.data += (m.b @ m.a).data * m.scale
                setattr(att, t, m.base)
    for p in model.parameters(): p.requires_grad = True


def interpolate(base, tuned, alpha: float):
    "WiSE-FT: a copy of `tuned` with weights (1 - alpha)·base + alpha·tuned."
    import copy
    from embedtune.train import interpolate_weights
    return interpolate_weights(copy.deepcopy(tuned), base.state_dict(), alpha)


def scores_of(model, d: dict, bm25: dict, cache: Path | None = None) -> dict:
    "Per-query nDCG@10 and Recall@100 of `model` alone and fused with BM25 (`cache`: where a stopped encoding resumes)."
    dense = dense_ranking(model, d, cache=cache)["ranking"]
    ids = {q: [i for i, _ in dense[q]] for q in d["queries"]}
    fused = {q: fuse([dense[q], bm25[q]]) for q in d["queries"]}
    out = {}
    for kind, ranked in (("dense", ids), ("+ BM25", fused)):
        s = per_query(ranked, d)
        out[kind] = {k: [round(float(x), 5) for x in v] for k, v in s.items()}
    return out


def load_rows(path: Path) -> dict:
    if not path.exists(): return {}
    with gzip.open(path, "rt") as f: return json.load(f)


def save_rows(rows: dict, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f: json.dump(rows, f)


def fixed_name(domain: str, model: str | None = None) -> str:
    return f"{domain}-fixed{'-' + model if model else ''}.json.gz"


def kept_fixed(cache: Path, domain: str, model: str | None = None) -> Path | None:
    "Where `domain`'s references are (in `cache`, or kept in `FIXED`), if anywhere."
    return next((f for f in (cache/fixed_name(domain, model), FIXED/fixed_name(domain, model)) if f.exists()), None)


def fixed(domain: str, d: dict, cache: Path, model: str | None = None) -> dict:
    "Base (MiniLM, or packaged `model`) and BM25 per-query scores on the judged queries, and BM25's top 100 for fusion (computed once, the scores kept in `FIXED` too)."
    f = kept_fixed(cache, domain, model)
    if f and f.parent == cache: return load_rows(f)
    bm = bm25_ranking(d)["ranking"]
    if f: out = {**load_rows(f), "bm25_top": bm}  # BM25 takes seconds: the kept copy leaves its top 100 out
    else:
        from embedtune.train import load_model
        base = scores_of(load_model(model), d, bm, cache/"vectors")
        out = {"stack": stack(), "bm25_top": bm, "base": base["dense"], "base + BM25": base["+ BM25"],
               "BM25": {k: [round(float(x), 5) for x in v] for k, v in per_query({q: [i for i, _ in bm[q]] for q in d["queries"]}, d).items()}}
        save_rows({k: v for k, v in out.items() if k != "bm25_top"}, FIXED/fixed_name(domain, model))
    save_rows(out, cache/fixed_name(domain, model))
    return out


def table(rows: dict, fixed_of: dict, models_of: dict | None = None, shown_of: dict | None = None) -> list[dict]:
    "One line per domain and retriever: base, BM25, base + BM25 (and other untrained `models_of[domain]`), then each recipe averaged over its seeds."
    out = []
    for domain, fx in fixed_of.items():
        shown = np.array((shown_of or {}).get(domain, [False] * len(fx["base"]["ndcg@10"])))  # judged queries shown to a writer
        base = np.array(fx["base"]["ndcg@10"])
        others = (models_of or {}).get(domain, {})
        for name, src, key in [(n, fx, n) for n in ("base", "BM25", "base + BM25")] + [
                (f"{m}{k[4:]}", o, k) for m, o in others.items() for k in ("base", "base + BM25")]:
            nd = np.array(src[key]["ndcg@10"])
            out.append({"domain": domain, "retriever": name, "queries": len(nd), "ndcg@10": round(float(nd.mean()), 4),
                        "recall@100": round(float(np.mean(src[key]["recall@100"])), 4), **({"vs base": ci(nd, base)} if name != "base" else {})})
        groups = {}
        for r in rows.values():
            if r["domain"] == domain: groups.setdefault((r["recipe"], r["coverage"], r["variant"]), []).append(r)
        for (recipe, coverage, variant), done in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
            spec = RECIPES.get(recipe, {})
            on = spec.get("model")
            if on and on not in others: continue  # that model's untrained scores are not at hand: its rows stay as they were
            ref_of = others[on] if on else fx  # a recipe on another model: against that model untrained
            keep = ~shown if spec.get("examples") else np.ones(len(shown), bool)  # never judged on its examples
            ref_base = np.array(ref_of["base"]["ndcg@10"])[keep]
            other = sum(r.get("stack") != ref_of.get("stack") for r in done) if domain in TIED else 0  # seeds scored otherwise
            for kind, ref_name in (("dense", "base"), ("+ BM25", "base + BM25")):
                kept = lambda r, metric: np.array(r["scores"][kind][metric])[keep]  # one seed's per-query scores, judged queries
                nd = np.mean([kept(r, "ndcg@10") for r in done], axis=0)
                ref = np.array(ref_of[ref_name]["ndcg@10"])[keep]
                out.append({"domain": domain, "retriever": f"fine-tuned{'' if kind == 'dense' else ' + BM25'}", "recipe": recipe,
                            **({"queries": int(keep.sum())} if not keep.all() else {}),
                            "coverage": coverage, "variant": variant, **({"base": on} if on else {}), "seeds": sorted(r["seed"] for r in done),
                            "units": done[0]["units"], "train_pairs": done[0]["train_pairs"], "train_s": [round(r["train_s"]) for r in done],
                            "ndcg@10": round(float(nd.mean()), 4),
                            "recall@100": round(float(np.mean([kept(r, "recall@100") for r in done])), 4),
                            f"vs {ref_name}": ci(nd, ref), **({"vs base": ci(nd, ref_base)} if kind != "dense" else {}),
                            "per_seed_vs_ref": [round(float(kept(r, "ndcg@10").mean() - ref.mean()), 4) for r in done],
                            **({"other_stack_seeds": other} if other else {})})  # a row without a stack predates its recording
    return out


def row_key(r: dict) -> tuple:
    "What a table row measures: a later row with the same key replaces it."
    return tuple(r.get(k) for k in ("domain", "retriever", "recipe", "coverage", "variant", "base"))


def merged(old: list[dict], new: list[dict], old_date: str | None = None) -> list[dict]:
    "`new` rows, and the `old` rows they do not replace (per-query scores lost or not loaded), each old row with its date."
    keys = {row_key(r) for r in new}
    kept = [{**r, "date": r.get("date", old_date)} for r in old if row_key(r) not in keys]
    domains = list(dict.fromkeys(r["domain"] for r in old + new))
    # per domain the untrained rows first, in the order given (the sort is stable), then the recipes as `table` orders them
    trained = lambda r: (r["recipe"], r["coverage"], r["variant"], r["retriever"]) if "recipe" in r else ()
    return sorted(kept + new, key=lambda r: (domains.index(r["domain"]), trained(r)))


def signed(x: float) -> str: return f"{x:+.3f}".replace("-", "−")


def markdown(rows: list[dict], order=("cranfield", "demo", "scifact-dev", "arguana"), variants=("", "WiSE-FT α=0.5")) -> str:
    "Every recipe (training on all units) against each domain's reference, alone and fused with BM25, as two Markdown tables."
    ref = lambda r: r.get("vs base + BM25") or r.get("vs base")
    cell = lambda r: "" if r is None else (f"{signed(ref(r)[0])} ({signed(ref(r)[1])} to {signed(ref(r)[2])})"
                                          + (f", {len(r['seeds'])} seeds" if len(r["seeds"]) > 1 else "") + ("‡" if r.get("other_stack_seeds") else ""))
    doms = [d for d in order if any(r["domain"] == d for r in rows)]
    n = {r["domain"]: r["queries"] for r in rows if r["retriever"] == "base"}
    out = []
    for kind, against in (("fine-tuned", "base"), ("fine-tuned + BM25", "base + BM25")):
        got = {(r["recipe"], r["variant"], r["domain"]): r for r in rows if r["retriever"] == kind and r.get("coverage") == 1.0}
        out += [f"| {kind} vs {against}, nDCG@10 (one seed unless marked) | " + " | ".join(f"{d} ({n[d]})" for d in doms) + " |",
                "|---|" + "---|" * len(doms)]
        for recipe in RECIPES:
            for v in variants:
                if any((recipe, v, d) in got for d in doms):
                    out.append(f"| {recipe}{', ' + v if v else ''} | " + " | ".join(cell(got.get((recipe, v, d))) for d in doms) + " |")
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--recipes", default="default")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--coverage", default="1", help="shares of the written units trained on")
    ap.add_argument("--wise", action="store_true", help="also the WiSE-FT interpolations of each trained model")
    ap.add_argument("--alphas", default=",".join(map(str, WISE)), help="the WiSE-FT α's")
    ap.add_argument("--table", action="store_true", help="only write the table of what is done")
    ap.add_argument("--markdown", action="store_true", help="only print bench/results/quality.json's recipes per domain as Markdown")
    ap.add_argument("--cache", default="runs/quality", help="base scores, BM25's rankings and models (recomputable)")
    ap.add_argument("--rows", default=str(ROWS), help="the per-query scores of every trained point")
    a = ap.parse_args()
    if a.markdown: return print(markdown(json.loads(RESULTS.read_text())["rows"]))
    if unknown := [r for r in a.recipes.split(",") if r not in RECIPES]:
        ap.error(f"unknown recipe(s) {unknown} (recipes are separated by commas): choose from {list(RECIPES)}")
    from embedtune.core import free_memory
    from embedtune.train import load_model
    cache, rows_file = Path(a.cache), Path(a.rows)
    alphas = [float(x) for x in a.alphas.split(",")]
    rows = load_rows(rows_file)
    now = lambda k: k in rows and rows[k].get("stack") == stack()  # a point scored otherwise is scored again
    fixed_of = {}
    for domain in a.domains.split(","):
        d = load_domain(domain)
        d = with_queries(d, judged(d))
        fixed_of[domain] = fixed(domain, d, cache)
        if a.table: continue
        for recipe in a.recipes.split(","):
            if m := RECIPES[recipe].get("model"): fixed(domain, d, cache, m)  # the untrained model to compare with
            for coverage in map(float, a.coverage.split(",")):
                pairs, units, of = pairs_for(domain, coverage, RECIPES[recipe].get("writer", WRITER))
                if RECIPES[recipe].get("restating") is False:
                    n, pairs = len(pairs), pairs.filter(lambda r: not restates(r["anchor"], r["positive"]))
                    print(f"{domain}: {n - len(pairs)} of {n} questions restate their passage, left out", flush=True)
                for seed in map(int, a.seeds.split(",")):
                    name = f"{domain}|{recipe}|{coverage}|{seed}"
                    scored, out, vectors = now(name), cache/"models"/name.replace("|", "_"), cache/"vectors"
                    if scored and (not a.wise or all(now(f"{name}|wise{x}") for x in alphas)): continue
                    saved = "lora" not in RECIPES[recipe] and (out/"model.safetensors").exists()  # (a LoRA folder holds the adapter alone)
                    if scored and saved:  # stopped after scoring it:
                        model, common = load_model(str(out)), {k: v for k, v in rows[name].items() if k not in ("variant", "scores")}
                    else:
                        trained = out/"trained.json"  # stopped after training, before scoring: the saved model is scored
                        common = json.loads(trained.read_text()) if saved and trained.exists() else {}
                        if common.get("stack") == stack(): model = load_model(str(out))
                        else:
                            model, secs, used = train(pairs, recipe, seed, out)
                            common = {"domain": domain, "recipe": recipe, "coverage": coverage, "seed": seed, "units": f"{units} of {of}",
                                      "train_pairs": used, "train_s": secs, "stack": stack()}
                            trained.write_text(json.dumps(common))
                        rows[name] = {**common, "variant": "", "scores": scores_of(model, d, fixed_of[domain]["bm25_top"], vectors)}
                        save_rows(rows, rows_file)
                    print(name, "nDCG@10", np.mean(rows[name]["scores"]["dense"]["ndcg@10"]), "base", np.mean(fixed_of[domain]["base"]["ndcg@10"]), flush=True)
                    if a.wise:
                        base = load_model(RECIPES[recipe].get("model"))
                        for alpha in (x for x in alphas if not now(f"{name}|wise{x}")):
                            rows[f"{name}|wise{alpha}"] = {**common, "variant": f"WiSE-FT α={alpha}",
                                                           "scores": scores_of(interpolate(base, model, alpha), d, fixed_of[domain]["bm25_top"], vectors)}
                            save_rows(rows, rows_file)
                    del model; free_memory()
    done = {**(json.loads(RESULTS.read_text()) if RESULTS.exists() else {})}
    earlier = done.get("earlier") or {k: v for k, v in done.items() if k in ("protocol", "date", "writing", "rows")}
    loaded = {dm: load_domain(dm) for dm in DOMAINS if kept_fixed(cache, dm)}
    all_fixed = {dm: fixed(dm, with_queries(d, judged(d)), cache) for dm, d in loaded.items()}
    shown_of = {dm: shown(d) for dm, d in loaded.items()}
    others = {dm: {m: load_rows(f) for m in {s["model"] for s in RECIPES.values() if "model" in s}
                   if (f := kept_fixed(cache, dm, m))} for dm in all_fixed}
    today = time.strftime("%Y-%m-%d")
    new = [{**r, "date": today} for r in table(rows, all_fixed, others, shown_of)]
    out = {"protocol": __doc__.split("Protocol. ")[1].replace("\n", " ").strip(), "date": today,
           "rows": merged(done.get("rows", []), new, done.get("date")), "earlier": earlier}
    RESULTS.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    for r in out["rows"]:
        ref = r.get("vs base + BM25") or r.get("vs base")
        print(f"{r['domain']:<12} {r['retriever']:<18} {r.get('recipe', ''):<10} {r.get('coverage', ''):<5} {r.get('variant', ''):<16} "
              f"nDCG@10 {r['ndcg@10']:.4f}  R@100 {r['recall@100']:.4f}  {ref or ''}")


if __name__ == "__main__":
    main()
