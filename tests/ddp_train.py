"""Launched by `torchrun` from test_train.py: fine-tune on a tiny dataset with several CPU processes (gloo)."""
import os, sys
from pathlib import Path
import torch.distributed as dist
from embedtune.core import load_json, save_json
from embedtune.train import build_loss, fine_tune, load_model

train, out = load_json(sys.argv[1]), Path(sys.argv[2])
m = fine_tune(load_model(), train, None, out, epochs=1, batch_size=4)
rank = int(os.environ.get("RANK", 0))
save_json({"rank": rank, "world_size": m["world_size"], "backend": dist.get_backend() if dist.is_initialized() else None,
           "train_loss": m["train_loss"], "gathers": build_loss(load_model()).loss.gather_across_devices}, out/f"rank{rank}.json")
