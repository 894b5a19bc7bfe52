"""The pipeline at 1,000 / 10,000 / 100,000 chunks on this machine: wall time and peak memory per step, the longest
silence, and how each step's cost grows with the corpus.

    .venv/bin/python bench/scale.py --sizes 1000,10000,100000     # ~1.5 h on 2 cores, most of it encoding 100,000 chunks
    .venv/bin/python bench/scale.py --sizes 1000                  # a few minutes (the file keeps the other sizes' rows)
    .venv/bin/python bench/scale.py --table                       # the committed results as a Markdown table

Protocol. The corpus is text that ships with Python: the standard library's own sources (`sysconfig`'s stdlib, *.py),
copied as .txt files; beyond one pass, further copies have their blank-line-separated blocks shuffled (seeded), so
that their chunks are new text rather than duplicates the pipeline drops. Files are added until their characters make
about `size` chunks of the default 750 characters; the chunk count quoted is the run's own. The question writer is a
stub OpenAI-compatible server on 127.0.0.1 in this process (tests/stubs.py) that answers at once, so writing is not
what is timed. Each size runs `embedtune run` (papermill, the user's command) in a fresh process with default
parameters otherwise (rag off: its cost does not grow with the corpus), progress on the terminal, its output read
here: per step the wall seconds and the kernel's peak resident memory after it (`metrics.json`), the run's wall time,
and the longest stretch without a byte of output (bars included). Growth: each step's seconds per 1,000 chunks and the
exponent b of seconds ∝ chunks^b between consecutive sizes. Nothing else may run meanwhile (2 cores).
Results: bench/results/scale.json.
"""
import argparse, json, os, random, subprocess, sys, sysconfig, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]/"tests"))
from stubs import StubOpenAI, serve_openai

RESULTS = Path(__file__).parent/"results"/"scale.json"
CHARS_PER_CHUNK = 572  # what the default splitter leaves per 750-character chunk on this text (measured: 640,555 characters, 1,119 chunks)


def sources() -> list[Path]:
    "The standard library's Python files, in a fixed order."
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(f for f in root.rglob("*.py") if "site-packages" not in f.parts and f.stat().st_size > 2000)


def build(folder: Path, chunks: int) -> dict:
    "A folder of .txt files holding about `chunks` chunks' worth of text (written once); returns its size."
    folder.mkdir(parents=True, exist_ok=True)
    done = folder.with_name(folder.name + ".json")  # beside the folder, not in it: the run reads every file inside
    if done.exists(): return json.loads(done.read_text())
    files, need, chars, n, copy = sources(), chunks * CHARS_PER_CHUNK, 0, 0, 0
    while chars < need:
        for f in files:
            text = f.read_text(encoding="utf-8", errors="replace")
            if copy:
                blocks = text.split("\n\n")
                random.Random(f"{copy}:{f.name}").shuffle(blocks)
                text = "\n\n".join(blocks)
            (folder/f"{n:06d}.txt").write_text(text, encoding="utf-8")
            chars, n = chars + len(text), n + 1
            if chars >= need: break
        copy += 1
    out = {"files": n, "characters": chars}
    done.write_text(json.dumps(out))
    return out


def run(folder: Path, out: Path, url: str) -> dict:
    "`embedtune run` on `folder` with the stub writer; its wall time and longest silence, from its output as it comes."
    cmd = [str(Path(sys.executable).parent/"embedtune"), "run", "-p", "llm", "stub-writer", "-p", "llm_base_url", url,
           "-p", "rag", "false", "-y", f"sources: [{json.dumps(str(folder))}]", "--out", str(out),
           # the set-up the committed table was measured with (the defaults before the teacher recipe): 50 train chunks
           "-p", "max_train_chunks", "50", "-p", "n_questions", "4", "-p", "epochs", "3", "-y", "teacher: ''"]
    t0 = last = time.time()
    longest, at = 0.0, 0.0
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log = open(out.parent/f"{out.name}.log", "wb")
    while chunk := os.read(proc.stdout.fileno(), 65536):
        now = time.time()
        if now - last > longest: longest, at = now - last, now - t0
        last = now
        log.write(chunk)
    rc = proc.wait()
    return {"rc": rc, "wall_s": round(time.time() - t0, 1), "longest_silence_s": round(longest, 1), "silence_ends_at_s": round(at, 1)}


def growth(rows: list[dict]) -> dict:
    "Per step: seconds per 1,000 chunks at each size, and the exponent between consecutive sizes."
    import math
    out = {}
    for step in rows[0]["steps_s"]:
        per = [round(1000 * r["steps_s"][step] / r["chunks"], 3) for r in rows]
        exps = [round(math.log(max(b["steps_s"][step], 0.1) / max(a["steps_s"][step], 0.1)) / math.log(b["chunks"] / a["chunks"]), 2)
                for a, b in zip(rows, rows[1:])]
        out[step] = {"s_per_1000_chunks": per, "exponent": exps}
    return out


def markdown(out: dict) -> str:
    "The results as a Markdown table: per size, each step's seconds, the peak memory and the longest silence."
    rows = out["rows"]
    steps = list(rows[0]["steps_s"])
    head = ["chunks", *(f"{s} (s)" for s in steps), "whole run (s)", "peak memory (GB)", "longest silence (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r['chunks']:,}", *(f"{r['steps_s'].get(s, 0):,.1f}" for s in steps), f"{r['wall_s']:,.0f}", f"{r['peak_memory_gb']:.2f}",
                 f"{r['longest_silence_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if out.get("growth"):
        lines += ["", "| step | s per 1,000 chunks | growth exponent b (s ∝ chunks^b) |", "|---|---|---|"]
        lines += [f"| {k} | {' / '.join(f'{x:g}' for x in g['s_per_1000_chunks'])} | {' / '.join(f'{x:g}' for x in g['exponent'])} |"
                  for k, g in out["growth"].items()]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--out", default="runs/scale")
    ap.add_argument("--table", action="store_true", help="only print the table of bench/results/scale.json")
    a = ap.parse_args()
    if a.table: return print(markdown(json.loads(RESULTS.read_text())))
    base, rows = Path(a.out), []
    for size in map(int, a.sizes.split(",")):
        corpus = build(base/f"corpus-{size}", size)
        folder = base/f"run-{size}-{time.strftime('%Y%m%d-%H%M%S')}"
        with serve_openai(StubOpenAI(), keep_alive=True) as url: seen = run(base/f"corpus-{size}", folder, url)
        m = json.loads((folder/"metrics.json").read_text())
        chunks = sum(m["datasets"][s]["chunks"] for s in ("train", "val", "test")) if "datasets" in m else None
        row = {"size": size, **corpus, "chunks": chunks, **seen, "peak_memory_gb": m.get("peak_memory_gb"),
               "steps_s": {k[:-2]: v for k, v in m["timings"].items()}, "peak_memory_gb_after": m.get("peak_memory_gb_after"),
               "recommended": (m.get("verdict") or {}).get("use"), "failed": m.get("failed")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    kept = {r["size"]: r for r in json.loads(RESULTS.read_text())["rows"]} if RESULTS.exists() else {}  # sizes not run this time
    rows = sorted({**kept, **{r["size"]: r for r in rows}}.values(), key=lambda r: r["size"])
    done = [r for r in rows if r["rc"] == 0 and r["chunks"]]
    out = {"protocol": __doc__.split("Protocol. ")[1].split("Results:")[0].replace("\n", " ").strip(), "date": time.strftime("%Y-%m-%d"),
           "machine": f"{os.cpu_count()} cores", "rows": rows, "growth": growth(done) if len(done) > 1 else {}}
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(markdown(out))


if __name__ == "__main__":
    main()
