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
	$(PY) -m pip install --quiet -e ".[dev,plot]"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) examples/demo.py --output demo_output

test: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest tests

clean:
	rm -rf $(VENV) demo_output .pytest_cache
