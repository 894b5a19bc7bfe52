"""Scale-out, measured on this machine: question writing against llama.cpp's server with many slots, and corpus
encoding with sentence-transformers' multi-process pool.

    .venv/bin/python bench/scaleout.py --server path/to/llama-server   # ~25 min; build llama-server as the "Scale out" page says
    .venv/bin/python bench/scaleout.py --parts encoding,training       # without the server, ~10 min

Protocol. Writing: the first 64 chunks of the demo corpus (chunked as the pipeline does), the packaged 0.5B writer
(Q4_K_M GGUF) served by `llama-server --parallel P -c 1024·P -t 2` on 127.0.0.1, asked as a run asks a server
(`chat_model(..., base_url=...)`, `agenerate_questions` with 4 questions per chunk, one per reply, `llm_concurrency` = P,
the run's default `llm_timeout` of 45 s), an empty cache each time: wall seconds, questions per second, replies received
vs asked, chunks without a question, errors. Beside it, the run's own default writer in process (one single-thread
model per core). Resume: the same at P = 16 in a child process, killed (SIGKILL) once about half the replies are cached,
then run again on the same cache: replies cached at the kill, replies the rerun found cached, replies it asked for.
Encoding: 2,000 SciFact abstracts with the default model (all-MiniLM-L6-v2), one process (torch on every core) vs
sentence-transformers' pool over ["cpu"] × cores (one process per core, one thread each), the pool's start-up timed
apart; each side twice, back to back, the better time kept; the largest difference between the two sides' vectors.
Training: one epoch of `fine_tune` on 512 (question, abstract) pairs of cranfield (the committed questions), batch 16,
in one process vs `torchrun --nproc_per_node <cores>` (gloo, one thread per process, batch 16 / cores per process so
that every step sees the same 16 pairs): the seconds inside `fine_tune` and the command's wall time, and the loss.
Nothing else may run meanwhile (2 cores).
Results: bench/results/scaleout.json.
"""
import argparse, asyncio, json, os, signal, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]/"tests"))
RESULTS = Path(__file__).parent/"results"/"scaleout.json"
CHUNKS, QUESTIONS, TIMEOUT = 64, 4, 45


def demo_chunks(n: int = CHUNKS) -> list:
    "The first `n` chunks of the demo corpus, as the pipeline chunks it."
    from devsuite import load_domain
    return load_domain("demo")["chunks"][:n]


def write(llm, chunks, cache_path, concurrency) -> dict:
    "Questions for `chunks` as a run writes them; what came back and how fast."
    from embedtune.questions import QuestionCache, agenerate_questions
    t = time.time()
    try:
        res = asyncio.run(agenerate_questions(chunks, llm, QUESTIONS, cache=QuestionCache(cache_path), concurrency=concurrency,
                                              timeout=TIMEOUT, progress=False, screen=False))
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:400], "wall_s": round(time.time() - t, 1)}
    s, kept = time.time() - t, sum(len(q) for q in res.questions.values())
    return {"wall_s": round(s, 1), "replies_asked": len(chunks) * QUESTIONS, "replies_received": res.n_replies,
            "replies_cached": res.n_cached, "requests": res.n_called, "questions": kept, "questions_per_s": round(kept / s, 3),
            "chunks_without_question": len(res.failures), "replies_by_kind": dict(res.replies)}


class Server:
    "llama-server on 127.0.0.1 with `parallel` slots of 1,024 tokens, until the `with` block ends."
    def __init__(self, binary, parallel, threads):
        from stubs import free_port
        from embedtune.llm import gguf_path
        self.port = free_port()
        self.cmd = [binary, "-m", str(gguf_path()), "--host", "127.0.0.1", "--port", str(self.port), "--parallel", str(parallel),
                    "-c", str(1024 * parallel), "-t", str(threads), "-tb", str(threads)]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                    if r.status == 200: return self
            except Exception: time.sleep(0.2)
            if self.proc.poll() is not None: break
        self.log.seek(0)
        raise RuntimeError(f"llama-server did not start: {self.log.read()[-2000:].decode(errors='replace')}")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(30)


def server_llm(url):
    "The writer a run makes for `-p llm_base_url url`."
    from embedtune.llm import chat_model
    return chat_model("qwen2.5-coder-0.5b", base_url=url, temperature=0.7, max_retries=0)


def servers(binary, parallels, threads) -> list:
    "Questions per second by llama-server at each number of slots, as many requests in flight as slots, an empty cache each."
    chunks, rows = demo_chunks(), []
    with tempfile.TemporaryDirectory() as tmp:
        for p in parallels:
            with Server(binary, p, threads) as srv: row = {"parallel": p, "llm_concurrency": p, **write(server_llm(srv.url), chunks, Path(tmp)/f"{p}.sqlite", p)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def writing(binary, parallels, threads) -> dict:
    "The in-process writer, the servers at each number of slots on the same chunks, and a kill and resume."
    from embedtune.llm import chat_model
    with tempfile.TemporaryDirectory() as tmp:
        local = write(chat_model("local"), demo_chunks(), Path(tmp)/"local.sqlite", None)
        print("in process:", json.dumps(local), flush=True)
        rows = servers(binary, parallels, threads)
        resume = kill_and_resume(binary, 16, threads, Path(tmp)/"resume.sqlite")
    return {"in_process": local, "server": rows, "resume": resume}


def kill_and_resume(binary, parallel, threads, cache_path) -> dict:
    "A writing process killed when about half the replies are cached, then a rerun on the same cache."
    from embedtune.questions import QuestionCache
    with Server(binary, parallel, threads) as srv:
        child = subprocess.Popen([sys.executable, __file__, "--child", srv.url, str(cache_path), str(parallel)])
        while child.poll() is None:
            time.sleep(0.2)
            if cache_path.exists() and len(QuestionCache(cache_path)) >= CHUNKS * QUESTIONS // 2:
                child.send_signal(signal.SIGKILL)
                break
        child.wait()
        at_kill = len(QuestionCache(cache_path))
        chunks = demo_chunks()
        again = write(server_llm(srv.url), chunks, cache_path, parallel)
    distinct = QUESTIONS * len({c.page_content for c in chunks})  # two chunks with the same text share their replies
    out = {"parallel": parallel, "killed": child.returncode == -signal.SIGKILL, "cached_at_kill": at_kill, "distinct_replies": distinct,
           "rerun": again, "nothing_asked_twice": at_kill + again.get("replies_received", 0) == distinct}
    print("resume:", json.dumps(out), flush=True)
    return out


def encoding(n: int = 2000, reps: int = 2) -> dict:
    "One process vs the multi-process pool on the same passages: seconds, speed-up, largest vector difference."
    import numpy as np, torch
    from devsuite import load_domain
    from embedtune.train import load_model
    texts = list(load_domain("scifact-dev")["corpus"].values())[:n]
    model, cores = load_model(None), os.cpu_count()
    one = lambda: model.encode(texts, batch_size=32, normalize_embeddings=True)
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the pool's processes: one thread each, one process per core
    t = time.time()
    pool = model.start_multi_process_pool(["cpu"] * cores)
    start = time.time() - t
    many = lambda: model.encode(texts, batch_size=32, normalize_embeddings=True, pool=pool)
    times = {"one_process": [], "pool": []}
    for _ in range(reps):
        for name, f in (("one_process", one), ("pool", many)):
            t = time.time(); v = f(); times[name].append(time.time() - t)
            if name == "one_process": a = v
            else: b = v
    model.stop_multi_process_pool(pool)
    best = {k: min(v) for k, v in times.items()}
    out = {"passages": n, "processes": cores, "torch_threads_one_process": torch.get_num_threads(),
           "one_process_s": round(best["one_process"], 1), "pool_s": round(best["pool"], 1), "pool_start_s": round(start, 1),
           "speedup": round(best["one_process"] / best["pool"], 2),
           "speedup_with_start": round(best["one_process"] / (best["pool"] + start), 2),
           "max_abs_difference": float(np.abs(np.asarray(a) - np.asarray(b)).max()), "all_times_s": {k: [round(x, 1) for x in v] for k, v in times.items()}}
    print("encoding:", json.dumps(out), flush=True)
    return out


def train_child(data, out, batch):
    "Inside one process of a training run: `fine_tune` for one epoch; rank 0 writes its seconds and loss."
    from embedtune.core import load_json, save_json
    from embedtune.train import fine_tune, load_model
    model, train = load_model(), load_json(data)
    t = time.time()
    m = fine_tune(model, train, None, out, epochs=1, batch_size=int(batch))
    if int(os.environ.get("RANK", 0)) == 0:
        save_json({"fine_tune_s": round(time.time() - t, 1), "world_size": m["world_size"], "train_loss": m["train_loss"]}, Path(out)/"timing.json")


def training(pairs: int = 512, batch: int = 16) -> dict:
    "One process vs torchrun with one process per core, the same pairs and the same 16 pairs per step."
    import gzip
    from embedtune.core import save_json
    rows = [json.loads(l) for l in gzip.open(Path(__file__).parent/"questions"/"cranfield-0.5b.jsonl.gz", "rt")]
    data = {"questions": {}, "relevant_contexts": {}, "corpus": {}}
    for r in rows:
        for i, q in enumerate(r["questions"]):
            if len(data["questions"]) == pairs: break
            data["questions"][f"{r['id']}-{i}"], data["relevant_contexts"][f"{r['id']}-{i}"] = q, [r["id"]]
            data["corpus"][r["id"]] = r["text"]
    cores, out = os.cpu_count(), {"pairs": len(data["questions"]), "batch_per_step": batch, "processes": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        save_json(data, Path(tmp)/"train.json")
        bin_ = Path(sys.executable).parent
        for name, cmd in (("one_process", [sys.executable, __file__, "--train-child", f"{tmp}/train.json", f"{tmp}/one", str(batch)]),
                          ("torchrun", [str(bin_/"torchrun"), "--nproc_per_node", str(cores), "--standalone", __file__,
                                        "--train-child", f"{tmp}/train.json", f"{tmp}/ddp", str(batch // cores)])):
            t = time.time()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out[name] = {"wall_s": round(time.time() - t, 1), **json.loads((Path(tmp)/name.replace("one_process", "one").replace("torchrun", "ddp")/"timing.json").read_text())}
    out["speedup"] = round(out["one_process"]["fine_tune_s"] / out["torchrun"]["fine_tune_s"], 2)
    print("training:", json.dumps(out), flush=True)
    return out


def markdown(out: dict) -> str:
    "The results as Markdown tables."
    lines = []
    if w := out.get("writing"):
        lines += ["| writer (64 demo chunks, 4 questions each) | requests at a time | questions / s | replies received / asked | errors |",
                  "|---|---|---|---|---|"]
        cell = lambda r: (f"{r.get('questions_per_s', 0):.2f} | {r.get('replies_received', 0)} / {r.get('replies_asked', CHUNKS * QUESTIONS)}"
                          f" | {r.get('error', '')[:120]}")
        lines.append(f"| in process (one model per core) | {os.cpu_count()} | {cell(w['in_process'])} |")
        lines += [f"| llama-server --parallel {r['parallel']} | {r['llm_concurrency']} | {cell(r)} |" for r in w["server"]]
        r = w["resume"]
        lines += ["", f"Killed at {r['cached_at_kill']} of {r['distinct_replies']} distinct replies cached (64 chunks, two texts twice); the rerun "
                      f"read {r['rerun'].get('replies_cached')} from the cache and asked for {r['rerun'].get('replies_received')} "
                      f"(nothing asked twice: {r['nothing_asked_twice']})."]
    if e := out.get("encoding"):
        lines += ["", "| encoding 2,000 SciFact abstracts | seconds | speed-up |", "|---|---|---|",
                  f"| one process, torch on {e['torch_threads_one_process']} threads | {e['one_process_s']} | 1 |",
                  f"| pool of {e['processes']} processes, one thread each | {e['pool_s']} (+{e['pool_start_s']} to start) | {e['speedup']}× "
                  f"({e['speedup_with_start']}× with the start) |",
                  "", f"Largest difference between the two sides' vectors: {e['max_abs_difference']:.1e}."]
    if t := out.get("training"):
        lines += ["", f"| one epoch, {t['pairs']} pairs, {t['batch_per_step']} per step | seconds in fine_tune | whole command | loss |",
                  "|---|---|---|---|"]
        lines += [f"| {name} | {t[k]['fine_tune_s']} | {t[k]['wall_s']} | {t[k]['train_loss']:.3f} |"
                  for k, name in (("one_process", "one process"), ("torchrun", f"torchrun, {t['processes']} processes"))]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="a llama-server binary (the writing part needs it)")
    ap.add_argument("--parts", default="writing,encoding,training", help="also: servers (the server rows of --parallel only, the rest kept)")
    ap.add_argument("--parallel", default="1,4,8,16,32")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--child", nargs=3, metavar=("URL", "CACHE", "CONCURRENCY"), help=argparse.SUPPRESS)
    ap.add_argument("--train-child", nargs=3, metavar=("DATA", "OUT", "BATCH"), help=argparse.SUPPRESS)
    ap.add_argument("--table", action="store_true", help="only print the tables of bench/results/scaleout.json")
    a = ap.parse_args()
    if a.table: return print(markdown(json.loads(RESULTS.read_text())))
    if a.train_child: return train_child(*a.train_child)
    if a.child:
        url, cache, c = a.child
        print("child:", json.dumps(write(server_llm(url), demo_chunks(), Path(cache), int(c))), flush=True)
        return
    parts = a.parts.split(",")
    if ("writing" in parts or "servers" in parts) and not a.server: ap.error("the writing part needs --server path/to/llama-server")
    out = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    out.update(protocol=" ".join(__doc__.split("Protocol. ")[1].split("Results:")[0].split()), date=time.strftime("%Y-%m-%d"),
               machine=f"{os.cpu_count()} cores")
    ps = [int(p) for p in a.parallel.split(",")]
    if "writing" in parts: out["writing"] = writing(a.server, ps, a.threads)
    elif "servers" in parts:
        kept = [r for r in out["writing"]["server"] if r["parallel"] not in ps]
        out["writing"]["server"] = sorted(kept + servers(a.server, ps, a.threads), key=lambda r: r["parallel"])
    if "encoding" in parts: out["encoding"] = encoding()
    if "training" in parts: out["training"] = training()
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(markdown(out))


if __name__ == "__main__":
    main()
