"""Write README.md from nbs/index.ipynb (markdown cells as they are, code cells as fenced Python): no Quarto needed."""
import sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]


def render(nb_path=ROOT/"nbs"/"index.ipynb") -> str:
    "The README text for notebook `nb_path`."
    parts = []
    for cell in nbformat.read(nb_path, as_version=4).cells:
        src = cell.source.strip()
        if cell.cell_type == "markdown": parts.append(src)
        elif cell.cell_type == "code" and not src.startswith("#| hide"):
            code = "\n".join(l for l in src.splitlines() if not l.startswith("#|")).strip()
            if code: parts.append(f"```python\n{code}\n```")
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    out = ROOT/"README.md"
    out.write_text(render())
    print(f"wrote {out}", file=sys.stderr)
