"""Keep the outputs of a real default run for the tutorial pages (`make tutorial` runs the pipeline, then this).

    .venv/bin/python tools/tutorial_run.py runs/<id>   # -> nbs/_run/finetune.ipynb, use_retriever.ipynb (committed, < 500 KB)

It first executes the "Use your retriever" notebook (`nbs/pipelines/use_retriever.ipynb`) on the run's `retriever/`,
into the run's folder, with papermill.

The executed notebook of a `make run` on the offline defaults is copied without what only a live session needs:
widget outputs (download and loading bars), stderr streams (warnings, progress) and widget state. The docs build
(`tools/proc_docs.py`) then shows each output under the tutorial's code cell it came from, for every cell whose code
is unchanged since the run; a cell edited later shows none until `make tutorial` runs again.
"""
import argparse, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEPT = ROOT/"nbs"/"_run"
USE = ROOT/"nbs"/"pipelines"/"use_retriever.ipynb"
LIMIT = 500_000  # bytes: the docs page must stay light


def slim(output: dict) -> dict | None:
    "The output as the page shows it, or None for what only a live session needs."
    if output["output_type"] == "stream" and output.get("name") == "stderr": return None
    data = output.get("data", {})
    if "application/vnd.jupyter.widget-view+json" in data: return None
    return output


def use_retriever(run: Path) -> Path:
    "Execute the \"Use your retriever\" notebook on `run`'s retriever/ into `run`, as a user would."
    import papermill as pm
    pm.execute_notebook(str(USE), str(run/USE.name), parameters={"retriever": str(run/"retriever")}, progress_bar=False)
    return run/USE.name


def keep(run: Path, name: str = "finetune.ipynb", out: Path = KEPT, allow_params: bool = False,
         injected: frozenset = frozenset({"out_dir", "retriever"})) -> Path:
    "Copy the executed notebook `name` of `run`, slimmed, into folder `out`; refuse a run that changed parameters."
    nb = json.loads((run/name).read_text(encoding="utf-8"))
    changed = sorted(set(nb["metadata"].get("papermill", {}).get("parameters", {})) - injected)  # what papermill injected
    if changed and not allow_params:
        sys.exit(f"tutorial_run: {run} changed {changed}: the tutorial shows a run on the defaults (`make tutorial`)")
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    if errors: sys.exit(f"tutorial_run: {run} stopped with {errors[0]['ename']}: {errors[0]['evalue']}")
    cells = []
    for c in nb["cells"]:
        c = {k: v for k, v in c.items() if k != "metadata"} | {"metadata": {k: v for k, v in c.get("metadata", {}).items() if k == "tags"}}
        if c["cell_type"] == "code": c["outputs"] = [o for o in map(slim, c.get("outputs", [])) if o]
        cells.append(c)
    nb = {**nb, "cells": cells, "metadata": {k: v for k, v in nb["metadata"].items() if k in ("kernelspec", "language_info")}}
    text = json.dumps(nb, ensure_ascii=False, indent=1) + "\n"
    if len(text.encode()) > LIMIT: sys.exit(f"tutorial_run: {len(text.encode()):,} bytes is over {LIMIT:,}: slim the outputs")
    out.mkdir(parents=True, exist_ok=True)
    (out/name).write_text(text, encoding="utf-8")
    print(f"tutorial_run: {(out/name).relative_to(ROOT)} ({len(text.encode()) / 1000:.0f} KB) from {run}")
    return out/name


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a folder written by `make run`")
    ap.add_argument("--allow-params", action="store_true", help="accept a run with changed parameters (not for the docs)")
    a = ap.parse_args()
    keep(a.run, allow_params=a.allow_params)
    use_retriever(a.run)
    keep(a.run, USE.name, allow_params=a.allow_params)
