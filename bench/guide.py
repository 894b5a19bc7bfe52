"""The guided loss's cost: sentence-transformers' GISTEmbedLoss against embedtune's FrozenGuideLoss (its frozen guide run once a step).

    .venv/bin/python bench/guide.py --domain cranfield --pairs 64 --repeats 2     # make mpnet first

Protocol. The first `--pairs` training pairs of a domain (bench/questions/, the package's writer, every unit), all-MiniLM-L6-v2
trained on them for one epoch with all-mpnet-base-v2 as guide (batch 16, lr 1e-5, seed 0: the quality bench's "guided" recipe),
once with each loss inside the same MatryoshkaLoss, alternating `--repeats` times in one process with nothing else running.
Printed and written to bench/results/guide.json: seconds per pair of each run, their ratio, the training losses and the largest
difference between the two losses' trained weights (the same computation: equal up to float rounding).
"""
import argparse, json, statistics, sys, tempfile, time
from pathlib import Path
from unittest import mock
sys.path.insert(0, str(Path(__file__).parent))
from quality import pairs_for
import embedtune.train as T

RESULTS = Path(__file__).parent/"results"/"guide.json"


def trained(pairs, loss_class, guide, seed: int = 0):
    "MiniLM after one guided epoch on `pairs` with `loss_class` as the guided loss; its seconds and training loss."
    model = T.load_model()
    with mock.patch.object(T, "FrozenGuideLoss", loss_class), tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        m = T.fine_tune(model, pairs, None, out, epochs=1, lr=1e-5, seed=seed, guide=guide, disable_tqdm=True)
        secs = time.perf_counter() - t
    return model, secs, m["train_loss"]


def main(domain="cranfield", n=64, repeats=2):
    pairs = pairs_for(domain, 1, "0.5b")[0].select(range(n))
    guide = T.load_model("mpnet")
    runs, models = [], {}
    for r in range(repeats):
        for name, cls in (("GISTEmbedLoss", T.GISTEmbedLoss), ("FrozenGuideLoss", T.FrozenGuideLoss)):
            models[name], secs, loss = trained(pairs, cls, guide)
            runs.append({"loss_class": name, "repeat": r, "seconds": round(secs, 1), "s_per_pair": round(secs / n, 3), "train_loss": loss})
            print(json.dumps(runs[-1]), flush=True)
    a, b = (models[k].state_dict() for k in ("GISTEmbedLoss", "FrozenGuideLoss"))
    diff = max(float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point())
    med = {k: statistics.median(x["s_per_pair"] for x in runs if x["loss_class"] == k) for k in ("GISTEmbedLoss", "FrozenGuideLoss")}
    out = {"protocol": f"{domain}, first {n} pairs, MiniLM student, mpnet guide, 1 epoch, batch 16, lr 1e-5, seed 0; runs alternate",
           "runs": runs, "median_s_per_pair": med, "speedup": round(med["GISTEmbedLoss"] / med["FrozenGuideLoss"], 2),
           "max_weight_difference": diff}
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"speed-up {out['speedup']}x (median s/pair {med}); largest weight difference {diff:.2e}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", default="cranfield")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    main(a.domain, a.pairs, a.repeats)
