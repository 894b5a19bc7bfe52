"""Corpus encoding on 2 cores: torch against faster backends, with the retrieval quality each one keeps.

    .venv/bin/python bench/encoding.py          # all backends that are installed; adds "encoding" to bench/results/generation.json
    .venv/bin/pip install onnxruntime onnx      # first, for the ONNX rows (not a dependency of embedtune)

The packaged all-MiniLM-L6-v2 encodes SciFact's 5,183 abstracts (title and text, 256 tokens at most) and its 809 claims
with each backend, batch 32, texts sorted by length as sentence-transformers does. Per backend: seconds for the
corpus, the speed-up over torch measured in the same run, nDCG@10 on the claims against the whole corpus, and its
difference from torch with a paired bootstrap 95 % interval over claims (scipy.stats.bootstrap, 2,000 resamples).
Backends:
- torch: sentence-transformers' default, float32.
- torch int8: the same model with its Linear layers quantized to int8 on the fly (`torch.ao.quantization.quantize_dynamic`).
- onnx / onnx int8: the transformer exported with `torch.onnx.export` and run by onnxruntime, float32 or with
  onnxruntime's dynamic int8 quantization; mean pooling and normalisation in NumPy. sentence-transformers' own
  `backend="onnx"` needs optimum-onnx, which requires transformers < 4.58 and cannot be installed beside
  sentence-transformers 6 (transformers 5).
"""
import json, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).parent))
from scifact import read_scifact, corpus_texts, per_query_ndcg, ci95
from embedtune.core import save_json, load_json
from embedtune.train import load_model

RESULTS = Path(__file__).parent/"results"/"generation.json"


def st_encoder(quantize=False):
    "sentence-transformers' encode, optionally with int8 Linear layers."
    model = load_model(None)
    if quantize: model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return lambda texts: model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)


def onnx_encoder(quantize=False):
    "The transformer of the same model in onnxruntime; mean pooling and normalisation in NumPy."
    import onnxruntime as ort
    model = load_model(None)
    tok, bert, n = model.tokenizer, model[0].auto_model.eval(), model.max_seq_length
    folder = Path(tempfile.mkdtemp())
    path = folder/"model.onnx"
    x = tok(["a sentence", "another one"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    class Transformer(torch.nn.Module):  # keyword arguments: the positional order of BertModel.forward changes between versions
        def __init__(self, m): super().__init__(); self.m = m
        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
    torch.onnx.export(Transformer(bert), tuple(x[k] for k in names), str(path), input_names=names, output_names=["last_hidden_state"],
                      dynamic_axes={k: {0: "batch", 1: "tokens"} for k in names + ["last_hidden_state"]}, opset_version=17,
                      dynamo=False)
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(str(path), str(folder/"int8.onnx"), weight_type=QuantType.QInt8)
        path = folder/"int8.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def encode(texts):
        order = np.argsort([-len(t) for t in texts])
        out = np.zeros((len(texts), bert.config.hidden_size), dtype=np.float32)
        for i in range(0, len(texts), 32):
            idx = order[i:i + 32]
            b = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=n, return_tensors="np")
            h = sess.run(None, {k: b[k].astype(np.int64) for k in names})[0]
            m = b["attention_mask"][..., None].astype(np.float32)
            v = (h * m).sum(1) / m.sum(1)
            out[idx] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out
    return encode


BACKENDS = {"torch": lambda: st_encoder(), "torch int8": lambda: st_encoder(True),
            "onnx": lambda: onnx_encoder(), "onnx int8": lambda: onnx_encoder(True)}


def main():
    corpus, claims, qrels = read_scifact()
    texts = corpus_texts(corpus)
    dids, qids = list(texts), list(claims)
    rows, base = [], None
    for name, make in BACKENDS.items():
        try: enc = make()
        except ImportError as e:
            print(f"{name}: not installed ({e.name}); skipped"); continue
        enc(list(texts.values())[:64])  # warm-up
        t = time.perf_counter(); D = enc([texts[i] for i in dids]); secs = time.perf_counter() - t
        Q = enc([claims[q] for q in qids])
        nd = per_query_ndcg(Q, D, qids, dids, qrels)
        if base is None: base = (secs, nd)
        row = {"backend": name, "corpus_seconds": round(secs, 1), "passages_per_s": round(len(dids) / secs, 1),
               "speedup": round(base[0] / secs, 2), "ndcg@10": round(float(nd.mean()), 4),
               "ndcg@10_diff": round(float(nd.mean() - base[1].mean()), 4), "diff_ci95": ci95(nd, base[1])}
        rows.append(row)
        print(f"{name:>11}: {secs:6.1f} s ({row['passages_per_s']} passages/s, {row['speedup']}x), nDCG@10 {row['ndcg@10']:.4f} "
              f"({row['ndcg@10_diff']:+.4f}, 95 % CI {row['diff_ci95']})", flush=True)
    ok = [r for r in rows if abs(r["ndcg@10_diff"]) < 0.002 and r["speedup"] > 1]
    best = max(ok, key=lambda r: r["speedup"])["backend"] if ok else "torch"
    print(f"fastest backend within 0.002 nDCG@10 of torch: {best}")
    out = load_json(RESULTS) if RESULTS.exists() else {}
    out["encoding"] = {"protocol": f"all-MiniLM-L6-v2 (packaged), SciFact dev: {len(dids)} abstracts (title and text, 256 tokens), "
                                   f"{len(qids)} claims, batch 32, {torch.get_num_threads()} threads; nDCG@10 from the top 10 of the "
                                   "whole corpus; paired bootstrap over claims",
                       "date": time.strftime("%Y-%m-%d"), "rows": rows, "use": best}
    save_json(out, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
