#!/usr/bin/env bash
# Build the docs site into _site/ offline, without Quarto: nbdev's notebook processing, then smalldocs.
#   tools/build_docs.sh                  # code and prose (the notebooks are committed without outputs)
#   tools/build_docs.sh --run runs/<id>  # the tutorial page also shows the outputs of that `make run`
# Run from the repository root. Quarto users can still run `nbdev-docs` (it writes _docs/).
set -euo pipefail
VENV=${VENV:-.venv}
if [ ! -f pyproject.toml ] || [ ! -d nbs ]; then echo "build_docs.sh: run me from the repository root" >&2; exit 2; fi
if [ ! -x "$VENV/bin/smalldocs" ]; then
  echo "build_docs.sh: $VENV/bin/smalldocs is missing: run \`make install\` (or $VENV/bin/pip install smalldocs)" >&2
  exit 2
fi

# 1. nbs/ -> _proc/: front matter, show_doc API docs, doc links, directives (see tools/proc_docs.py)
"$VENV/bin/python" tools/proc_docs.py "$@"

# 2. _proc/ -> _proc/<output-dir of nbs/nbdev.yml>/; --strict: any smalldocs warning fails the build
OUT=$("$VENV/bin/python" -c 'import yaml; print(yaml.safe_load(open("_proc/nbdev.yml"))["project"]["output-dir"])')
rm -rf "_proc/$OUT"
"$VENV/bin/smalldocs" render --quiet --strict _proc

# 3. -> _site/
rm -rf _site
mv "_proc/$OUT" _site
echo "build_docs.sh: site in _site/ ($(find _site -name '*.html' | wc -l) pages); view it with: $VENV/bin/python -m http.server -d _site -b 127.0.0.1 8000"
