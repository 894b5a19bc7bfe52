"""Synthetic questions for the dev suite, written once by the package's own writer and kept compressed under
bench/questions/, so that no later measurement pays for them again.

    .venv/bin/python bench/write_questions.py --domains cranfield,demo      # every document (resumable: replies are cached)
    .venv/bin/python bench/write_questions.py --domains scifact-dev,arguana --covering 300  # the covered protocol
    .venv/bin/python bench/write_questions.py --domains cranfield --llm local-1.5b --tag 1.5b   # the bigger writer (make local-1.5b)
    .venv/bin/python bench/write_questions.py --domains demo --examples 8 --tag 0.5b-ex8   # in the style of 8 real queries
    .venv/bin/python bench/write_questions.py --domains demo --examples 8 --tag 0.5b-ex8 --rescreen   # stored ones, filter changed
    .venv/bin/python bench/write_questions.py --domains cranfield --examples 8 --tag 0.5b-ex8 --carry 50   # over several sessions

What is written about: for the BEIR domains, the first chunk (at most 1,000 characters) of each document's title and
text, the part MiniLM reads; for the demo corpus, every chunk as the pipeline cuts it by default (750 characters,
de-duplicated). `--n` questions per unit with the pipeline's defaults (one question per reply, its filter); with
`--examples k`, the first k of the domain's 8 style queries (`devsuite.style_queries`, never judged then) are the
writer's `query_examples`. Each line of bench/questions/<domain>-<tag>.jsonl.gz is {"id": document or chunk id, "text":
what the writer read, "questions": kept, "dropped": [[question, reason], ...]}; bench/questions/writing.json has the
counts and seconds per question. A writing longer than a session (whose cache does not outlive it) takes `--carry k`:
every k units its replies so far go to bench/questions/<domain>-<tag>.replies.jsonl.gz (commit it), from which the next
session's run starts; the file is removed once the questions are written.
"""
import argparse, gzip, json, random, sys, time
from collections import Counter
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from devsuite import covered, load_domain, style_queries

OUT = Path(__file__).parent/"questions"
WRITER = "0.5b"  # the tag of the package's own writer, Qwen2.5-Coder-0.5B


def units(d: dict, docs: int = 0, covering: int = 0, seed: int = 0) -> list:
    "What the writer reads (Documents with metadata id: a document's, or the demo's chunk id): all, `docs` sampled, or `covered` for `covering` queries."
    from langchain_core.documents import Document
    if d["name"] == "demo":
        from embedtune.chunk import split_chunks
        chunks = [c for part in split_chunks(d["chunks"]).values() for c in part]  # de-duplicated, as a run has them
        return sorted(chunks, key=lambda c: c.metadata["id"])
    from embedtune.chunk import chunk_documents
    ids = sorted(covered(d, covering, seed)[1]) if covering else sorted(random.Random(seed).sample(sorted(d["corpus"]), docs)) if docs else sorted(d["corpus"])
    first = {}
    for c in chunk_documents([Document(d["corpus"][i], metadata={"source": f"{d['name']}:{i}", "doc": i}) for i in ids], 1000, 0):
        first.setdefault(c.metadata["doc"], c)
    return [Document(first[i].page_content, metadata={"id": i, "source": first[i].metadata["source"]}) for i in ids if i in first and first[i].page_content.strip()]


def path_of(domain: str, tag: str) -> Path: return OUT/f"{domain}-{tag}.jsonl.gz"


def read_questions(domain: str, tag: str = WRITER) -> dict[str, dict]:
    "The kept questions of a domain: {id: {'text', 'questions', 'dropped'}}."
    with gzip.open(path_of(domain, tag), "rt", encoding="utf-8") as f: return {r["id"]: r for r in map(json.loads, f)}


def write_rows(domain: str, tag: str, rows) -> None:
    "Store `rows` (dicts of id, text, questions, dropped) as `domain`'s questions under `tag`, one JSON line each."
    with gzip.open(path_of(domain, tag), "wt", encoding="utf-8") as f:
        for r in rows: f.write(json.dumps(r, ensure_ascii=False) + "\n")


def carried(domain: str, tag: str) -> Path: return OUT/f"{domain}-{tag}.replies.jsonl.gz"


def carry_cache(domain: str, tag: str, work: Path = Path("runs/carry")):
    "A reply cache of its own for `domain`'s writing under `tag`, holding the replies carried over from an earlier session."
    from embedtune.questions import QuestionCache
    work.mkdir(parents=True, exist_ok=True)
    cache = QuestionCache(work/f"{domain}-{tag}.sqlite")
    if carried(domain, tag).exists():
        with gzip.open(carried(domain, tag), "rt", encoding="utf-8") as f:
            for r in map(json.loads, f): cache.put(r["key"], r["model"], r["reply"])
    return cache


def save_carry(cache, domain: str, tag: str) -> int:
    "Store every reply in `cache` as `domain`'s carried replies (written aside, then renamed: a stop midway loses nothing); returns their count."
    rows = cache.db.execute("SELECT key, model, reply FROM replies ORDER BY key").fetchall()
    part = carried(domain, tag).with_suffix(".part")
    with gzip.open(part, "wt", encoding="utf-8") as f:
        for k, m, r in rows: f.write(json.dumps({"key": k, "model": m, "reply": r}, ensure_ascii=False) + "\n")
    part.replace(carried(domain, tag))
    return len(rows)


def rescreen(domain: str, tag: str, examples: list[str]) -> dict:
    "Check the kept questions stored for `domain` again with the package's filter (one written before a reason was added); returns the counts dropped now."
    from embedtune.filter import filter_questions
    from embedtune.questions import query_length
    rows = read_questions(domain, tag)
    s = filter_questions({i: r["questions"] for i, r in rows.items()}, {i: r["text"] for i, r in rows.items()}, query_length(examples) // 4, examples)
    for i, r in rows.items(): r["questions"] = s.kept.get(i, [])
    for i, q, reason in s.dropped: rows[i]["dropped"].append([q, reason])
    write_rows(domain, tag, rows.values())
    return s.counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", default="cranfield,demo")
    ap.add_argument("--docs", type=int, default=0, help="a seeded sample of this many documents (0: all)")
    ap.add_argument("--covering", type=int, default=0, help="the covered protocol: documents relevant to this many sampled queries and as many others")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--llm", default="local")
    ap.add_argument("--tag", default=WRITER, help="names the writer in the file name")
    ap.add_argument("--examples", type=int, default=0, help="the domain's style queries shown to the writer as query_examples (<= 8)")
    ap.add_argument("--rescreen", action="store_true", help="no writing: the stored questions checked again with the package's filter")
    ap.add_argument("--carry", type=int, default=0, help="every this many units, keep the replies so far under bench/questions/ for a later session")
    a = ap.parse_args()
    if not 0 <= a.examples <= 8: ap.error("--examples: between 0 and 8 (the domain's style queries)")
    from embedtune.llm import chat_model
    from embedtune.questions import generate_questions
    llm = None if a.rescreen else chat_model(a.llm)
    OUT.mkdir(exist_ok=True)
    summary_file = OUT/"writing.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    for domain in a.domains.split(","):
        d = load_domain(domain)
        us = units(d, a.docs, a.covering)
        examples = [d["queries"][q] for q in style_queries(d)[:a.examples]]
        if a.rescreen:
            got, now = summary[f"{domain}-{a.tag}"], rescreen(domain, a.tag, examples)
            got["kept"] -= sum(now.values())
            got["dropped"] = dict(sorted((Counter(got["dropped"]) + Counter(now)).items(), key=lambda kv: -kv[1]))
            summary_file.write_text(json.dumps(summary, indent=1) + "\n")
            print(domain, "dropped now", now, got, flush=True)
            continue
        t, fresh, cache = time.time(), 0, carry_cache(domain, a.tag) if a.carry else None
        for i in range(0, len(us), a.carry) if a.carry else ():  # the replies, part by part, each part kept
            fresh += generate_questions(us[i:i + a.carry], llm, a.n, examples=examples or None, cache=cache, screen=False).n_replies
            print(f"{domain}: replies for {min(i + a.carry, len(us))} of {len(us)} units, {save_carry(cache, domain, a.tag)} kept in {carried(domain, a.tag)}", flush=True)
        w = generate_questions(us, llm, a.n, examples=examples or None, cache=cache)
        secs, fresh = time.time() - t, fresh + w.n_replies
        w.n_cached, w.n_replies = w.n_cached + w.n_replies - fresh, fresh  # as one writing: replies carried over count as cached
        dropped = {}
        for cid, q, reason in w.screened.dropped: dropped.setdefault(cid, []).append([q, reason])
        ids = [u.metadata["id"] for u in us]
        write_rows(domain, a.tag, ({"id": i, "text": u.page_content, "questions": w.kept.get(i, []), "dropped": dropped.get(i, [])}
                                   for i, u in zip(ids, us)))
        written, before = sum(map(len, w.questions.values())), summary.get(f"{domain}-{a.tag}", {})
        summary[f"{domain}-{a.tag}"] = {"units": len(us), "covering": a.covering, "docs": a.docs, "questions_per_unit": a.n,
                                        "examples": len(examples), "written": written,
                                        "kept": sum(map(len, w.kept.values())), "dropped": w.screened.counts,
                                        "failed_units": len(w.failures), "replies_written_now": w.n_replies, "cached": w.n_cached,
                                        "seconds": round(secs), "date": time.strftime("%Y-%m-%d"), "llm": a.llm}
        if w.n_replies: summary[f"{domain}-{a.tag}"]["s_per_question"] = round(secs / w.n_replies, 2)
        elif before.get("replies_written_now"):  # screened again from the cache: keep what writing cost
            summary[f"{domain}-{a.tag}"].update({k: before[k] for k in ("replies_written_now", "cached", "seconds", "date", "s_per_question") if k in before})
        summary_file.write_text(json.dumps(summary, indent=1) + "\n")
        if a.carry: carried(domain, a.tag).unlink(missing_ok=True)  # the questions are kept: their replies need not be
        print(domain, summary[f"{domain}-{a.tag}"], flush=True)


if __name__ == "__main__":
    main()
