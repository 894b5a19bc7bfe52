"""The dev suite: four corpora with real, labelled queries, read the same way by every bench.

    from devsuite import DOMAINS, load_domain
    d = load_domain("cranfield")   # {"corpus": {id: text}, "queries": {qid: text}, "qrels": {qid: {ids}}, "skip_self": bool}

- scifact-dev: 5,183 abstracts, 809 expert claims (BEIR's title + text);
- cranfield: 1,400 aeronautics abstracts, 225 engineers' questions (every judged row counts as relevant);
- arguana: 8,674 debate arguments, 1,406 queries that are arguments themselves (their own id is never ranked);
- demo: the pipeline's demo corpus (the Python language reference, chunked as the pipeline does by default) and the
  hand-written queries shipped with embedtune, each relevant to every chunk of its source topic.
The queries are only measured on, never trained on (`../shared/data/README.md`).
"""
import gzip, json, random
from pathlib import Path

DATA = Path(__file__).resolve().parents[2]/"shared"/"data"
DOMAINS = ["scifact-dev", "cranfield", "arguana", "demo"]


def _jsonl(path: Path):
    with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _beir(folder: Path) -> dict:
    "A BEIR folder: title + text per document (BEIR's convention), the judged queries, every judged row relevant."
    corpus_file = next(p for p in (folder/"corpus.jsonl", folder/"corpus.jsonl.gz") if p.exists())
    corpus = {d["_id"]: f"{d.get('title', '')} {d['text']}".strip() for d in _jsonl(corpus_file)}
    qrels = {}
    for line in (folder/"qrels.tsv").read_text().splitlines()[1:]:
        q, c, score = line.split("\t")
        if int(score) > 0 and c in corpus: qrels.setdefault(q, set()).add(c)
    queries = {q["_id"]: q["text"] for q in _jsonl(folder/"queries.jsonl") if q["_id"] in qrels}
    return {"corpus": corpus, "queries": queries, "qrels": {q: qrels[q] for q in queries}}


def _demo(chunk_size: int = 750, chunk_overlap: int = 20) -> dict:
    "The demo corpus chunked as the pipeline's defaults chunk it, and the shipped labelled queries."
    from embedtune.load import demo_corpus
    from embedtune.chunk import chunk_documents
    from embedtune.evaluate import DEMO_QUERIES, read_eval_queries
    chunks = chunk_documents(demo_corpus(), chunk_size, chunk_overlap)
    ds = read_eval_queries(DEMO_QUERIES, chunks)
    return {"corpus": ds["corpus"], "queries": ds["questions"], "qrels": {q: set(r) for q, r in ds["relevant_contexts"].items()},
            "chunks": chunks}


def style_queries(d: dict, seed: int = 0) -> list[str]:
    "Ids of 8 queries that may be shown to the writer as examples of style (never evaluated on then)."
    return random.Random(seed).sample(sorted(d["queries"]), 8)


def covered(d: dict, n_queries: int = 300, seed: int = 0) -> tuple[list[str], list[str]]:
    "The covered protocol: `n_queries` sampled queries (not the style examples), and the documents relevant to them plus as many others."
    rng = random.Random(seed)
    sample = sorted(rng.sample(sorted(set(d["queries"]) - set(style_queries(d, seed))), n_queries))
    relevant = sorted({i for q in sample for i in d["qrels"][q]})
    others = rng.sample(sorted(set(d["corpus"]) - set(relevant)), len(relevant))
    return sample, relevant + others


def load_domain(name: str) -> dict:
    "One domain of the suite (see the module's docstring); `skip_self`: a query's own id is removed from its ranking."
    if name not in DOMAINS: raise ValueError(f"unknown domain {name!r}; the suite: {DOMAINS}")
    d = _demo() if name == "demo" else _beir(DATA/name)
    return {**d, "name": name, "skip_self": name == "arguana"}
