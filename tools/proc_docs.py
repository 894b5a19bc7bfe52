"""Process the notebooks into `_proc/` for the docs, as `nbdev-proc-nbs` does, then adapt `_proc/` to smalldocs.

Usage (from anywhere): `.venv/bin/python tools/proc_docs.py [--run runs/<id>]`; `tools/build_docs.sh` calls it.

As `nbdev-proc-nbs`, it executes each notebook's exported cells, `show_doc` cells and cells with imports (the notebooks
keep imports in cells of their own, so no test or demo runs). Differences from `nbdev-proc-nbs`, all on purpose:
- it never tries to install Quarto (`nbdev-proc-nbs` runs nbdev's Quarto installer when `quarto` is missing);
- it runs in one process, one notebook at a time (modest CPU), and always from scratch;
- it keeps `nbs/sidebar.yml` as written (nbdev's generated sidebar would replace it unless
  `custom_sidebar = true`), and refreshes `nbs/nbdev.yml` from `pyproject.toml` as `nbdev-docs` does.

Adaptations of `_proc/` for smalldocs, which Quarto does not need:
- smalldocs ignores `output-file`, so `00_core.ipynb` would become `00_core.html` while nbdev's doc links and
  Quarto use `core.html`: each notebook is renamed to its `output-file` and the references to it in the YAML
  files and in Markdown links are rewritten;
- keys that only Quarto reads (`format.commonmark`, `keep-md`, `format-links`) are dropped from the copies in
  `_proc/`, so that `smalldocs render --strict` fails on any other warning.

The tutorial pages (the pipeline and "Use your retriever") show the outputs of a real default run: those kept in
`nbs/_run/` (`make tutorial` refreshes them), or with `--run runs/<id>` those of another `make run`. Nothing is executed: each output goes under the
code cell it came from, for every cell whose code is unchanged since that run.
"""
import argparse, json, os, re, sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = [Path("pipelines/finetune.ipynb"), Path("pipelines/use_retriever.ipynb")]  # pages that show a real run's outputs
KEPT_RUN = Path("_run")  # a default run's outputs for those pages: tools/tutorial_run.py


def with_outputs(current: dict, ran: dict) -> tuple[dict, list[str]]:
    "`current` with `ran`'s outputs under each code cell whose id and code are unchanged; the ids of cells whose outputs went stale."
    src = lambda c: ("".join(c["source"]) if isinstance(c["source"], list) else c["source"]).strip()
    by_id = {c.get("id"): c for c in ran["cells"] if c["cell_type"] == "code"}
    stale = []
    for c in current["cells"]:
        r = by_id.get(c.get("id")) if c["cell_type"] == "code" else None
        if r is None: continue
        if src(r) == src(c): c["outputs"], c["execution_count"] = r.get("outputs", []), r.get("execution_count")
        elif r.get("outputs"): stale.append(c["id"])
    return current, stale


def use_run(ran: Path, nbs: Path, proc: Path, page: Path):
    "Process pipeline notebook `page` into `_proc/` with the outputs of the executed notebook `ran` (a run's, or the kept one)."
    from fastcore.nbio import dict2nb, write_nb
    from nbdev.processors import FilterDefaults
    if not ran.exists(): sys.exit(f"proc_docs: {ran} not found: give a folder written by `make run`")
    current = json.loads((nbs/page).read_text(encoding="utf-8"))
    merged, stale = with_outputs(current, json.loads(ran.read_text(encoding="utf-8")))
    nb = dict2nb(merged)
    nb["path_"] = str(nbs/page)  # as read_nb sets it: nbdev's processors need it
    FilterDefaults()(nb)
    write_nb(nb, proc/page)
    shown = sum(bool(c.get("outputs")) for c in merged["cells"] if c["cell_type"] == "code")
    print(f"proc_docs: {page} shows the outputs of {ran} under {shown} cells"
          + (f"; {len(stale)} cells changed since (no outputs shown: `make tutorial` refreshes them): {stale}" if stale else ""),
          file=sys.stderr)


def frontmatter(nb: dict) -> tuple[dict, dict | None]:
    "The YAML front matter of a processed notebook (nbdev puts it in the first raw cell), and that cell."
    c = nb["cells"][0] if nb["cells"] else None
    src = "".join(c["source"]) if c and isinstance(c["source"], list) else (c or {}).get("source", "")
    m = re.match(r"^---\n(.*?)\n---", src, re.S) if c and c["cell_type"] == "raw" else None
    return (yaml.safe_load(m.group(1)) or {}, c) if m else ({}, None)


def rename_to_output_files(proc: Path) -> dict[str, str]:
    "Rename each processed notebook to its `output-file` (`00_core.ipynb` -> `core.ipynb`); drop the key."
    renames = {}
    for p in sorted(proc.rglob("*.ipynb")):
        if any(part.startswith(("_", ".")) for part in p.relative_to(proc).parts): continue
        nb = json.loads(p.read_text(encoding="utf-8"))
        fm, cell = frontmatter(nb)
        if "output-file" not in fm: continue
        out = Path(fm.pop("output-file"))
        cell["source"] = "---\n" + yaml.safe_dump(fm, allow_unicode=True, sort_keys=False) + "---\n\n"
        new = p.with_name(out.with_suffix(".ipynb").name)
        if new != p and new.exists(): sys.exit(f"proc_docs: {p} and {new} would both become {out}")
        p.unlink()
        new.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")
        if new != p: renames[p.relative_to(proc).as_posix()] = new.relative_to(proc).as_posix()
    return renames


def rewrite_yaml(path: Path, renames: dict[str, str], drop=()):
    "Point the entries of a YAML config at the renamed notebooks; drop the dotted keys in `drop`."
    if not path.exists(): return
    cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    def walk(o):
        if isinstance(o, dict): return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list): return [walk(v) for v in o]
        return renames.get(o, o) if isinstance(o, str) else o
    cfg = walk(cfg)
    for key in drop:
        *parents, last = key.split(".")
        d = cfg
        for k in parents: d = d.get(k) if isinstance(d, dict) else None
        if isinstance(d, dict): d.pop(last, None)
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")


def rewrite_md_links(proc: Path, renames: dict[str, str]):
    "Rewrite Markdown links to renamed notebooks (`](00_core.ipynb#x)` -> `](core.ipynb#x)`), relative to each page."
    for p in proc.rglob("*.ipynb"):
        if any(part.startswith(("_", ".")) for part in p.relative_to(proc).parts): continue
        nb, changed = json.loads(p.read_text(encoding="utf-8")), False
        here = p.parent.relative_to(proc)
        def fix(m):
            target = Path(os.path.normpath(here/m.group(2))).as_posix()  # "pipelines/../06a_x.ipynb" -> "06a_x.ipynb"
            new = renames.get(target)
            if not new: return m.group(0)
            rel = Path(os.path.relpath(proc/new, p.parent)).as_posix()
            return f"{m.group(1)}{rel}{m.group(3)}"
        for c in nb["cells"]:
            if c["cell_type"] != "markdown": continue
            src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            new = re.sub(r"(\]\()([^)#\s]+\.ipynb)([#)\s])", fix, src)
            if new != src: c["source"], changed = new, True
        if changed: p.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, help="a `make run` folder whose executed tutorial notebook to show")
    args = ap.parse_args()
    run = args.run.resolve() if args.run else None
    os.chdir(ROOT)
    from nbdev.config import get_config
    from nbdev.quarto import refresh_quarto_yml
    from nbdev.serve import proc_nbs
    nbs = get_config().nbs_path
    refresh_quarto_yml()  # nbs/nbdev.yml: title, site-url, repo-url, output-dir, from pyproject.toml
    proc = proc_nbs(n_workers=0, force=True)
    for page in PIPELINES:
        ran = run/page.name if run else nbs/KEPT_RUN/page.name
        if ran.exists(): use_run(ran, nbs, proc, page)
    renames = rename_to_output_files(proc)
    rewrite_yaml(proc/"_quarto.yml", renames, drop=("format.commonmark", "format.html.keep-md"))
    rewrite_yaml(proc/"sidebar.yml", renames)
    rewrite_yaml(proc/"nbdev.yml", renames, drop=("format-links",))
    rewrite_md_links(proc, renames)
    print(f"proc_docs: processed the notebooks into {proc.relative_to(ROOT)}/", file=sys.stderr)


if __name__ == "__main__":
    main()
