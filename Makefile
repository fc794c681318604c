# Two commands do all set-up on a fresh machine:
#   make demo   -- builds .venv, then fits STC on the embedded default (MiniLM on MR)
#   make test   -- builds .venv, then runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stc-installed

.PHONY: demo test install clean

install: $(STAMP)

# torch is installed first, pinned, so that nothing resolves a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test,ray,serve,onnx,setfit]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stc demo

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
