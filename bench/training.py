"""Training pairs/second and test nDCG@10: embedtune's `fine_tune` against the seed's recipe (legacy `model.fit`).

    .venv/bin/python bench/training.py --run runs/<a finished run> --epochs 3 --batch-size 10

Both train the same base model on the run's train split for the same number of steps (same pairs, epochs and batch
size, MatryoshkaLoss around MultipleNegativesRankingLoss, 10 % warm-up) and validate on the val split as each recipe
does: the seed every 50 steps with its best model saved to disk, embedtune before training and after each epoch.
Both are then scored on the run's test split with sentence-transformers' InformationRetrievalEvaluator.
"""
import argparse, tempfile, time
from pathlib import Path
from torch.utils.data import DataLoader
from sentence_transformers import InputExample
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss
from embedtune.dataset import read_dataset
from embedtune.train import fine_tune, ir_evaluator, load_model, matryoshka_dims


def seed_recipe(train, val, out, epochs, batch_size):
    "The seed's training: InputExamples in an unshuffled DataLoader, `model.fit` with an evaluator every 50 steps."
    model = load_model()
    examples = [InputExample(texts=[q, train["corpus"][train["relevant_contexts"][qid][0]]]) for qid, q in train["questions"].items()]
    loader = DataLoader(examples, batch_size=batch_size)
    loss = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), matryoshka_dims(model.get_embedding_dimension()))
    t = time.perf_counter()
    model.fit(train_objectives=[(loader, loss)], epochs=epochs, warmup_steps=int(len(loader) * epochs * 0.1),
              output_path=str(out), show_progress_bar=False, evaluator=ir_evaluator(val), evaluation_steps=50)
    return model, time.perf_counter() - t


def embedtune_recipe(train, val, out, epochs, batch_size):
    "embedtune's `fine_tune`."
    model = load_model()
    t = time.perf_counter()
    fine_tune(model, train, val, out, epochs=epochs, batch_size=batch_size, disable_tqdm=True)
    return model, time.perf_counter() - t


def main(run, epochs=3, batch_size=10):
    train, val, test = (read_dataset(Path(run)/f"{s}_dataset.json") for s in ("train", "val", "test"))
    n = len(train["questions"])
    base = ir_evaluator(test, "test")(load_model())["test_cosine_ndcg@10"]
    print(f"{n} training pairs, {epochs} epochs, batch {batch_size}; {len(test['questions'])} test questions; base nDCG@10 {base:.3f}")
    for name, recipe in [("seed (model.fit)", seed_recipe), ("embedtune", embedtune_recipe)]:
        model, secs = recipe(train, val, Path(tempfile.mkdtemp())/"model", epochs, batch_size)
        ndcg = ir_evaluator(test, "test")(model)["test_cosine_ndcg@10"]
        print(f"{name:>17}: {secs:6.1f} s  {n * epochs / secs:6.1f} pairs/s  test nDCG@10 {ndcg:.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run folder with train/val/test_dataset.json")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=10)
    a = ap.parse_args()
    main(a.run, a.epochs, a.batch_size)
