# spikeconverter: `make demo` runs the main job, `make test` the test suite, `make docs`
# the documentation site (into site/).
# Both create .venv with Python 3.10 when it is missing (lava-nc 0.10.0 installs only on 3.10).
# Choose the interpreter with `make PYTHON=/path/to/python3.10 ...`.

VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# A working Python 3.10: $(PYTHON) if given, else python3.10 on PATH, else pyenv's versions.
# `python3.10` may be a pyenv shim that fails when 3.10 is not selected, so each candidate is run.
define find_python
for c in "$(PYTHON)" python3.10 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10 2>/dev/null) \
         /usr/bin/python3.10 /usr/local/bin/python3.10; do \
  [ -n "$$c" ] || continue; \
  if "$$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then echo "$$c"; exit 0; fi; \
done; exit 1
endef

.PHONY: demo test lint bench docs venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(VPY) ]; then \
	  py=$$($(find_python)) || { \
	    echo "error: Python 3.10 not found (lava-nc 0.10.0 needs exactly 3.10)." >&2; \
	    echo "  install it, e.g. 'pyenv install 3.10' or 'apt-get install python3.10 python3.10-venv'," >&2; \
	    echo "  or point to one: make PYTHON=/path/to/python3.10 $(MAKECMDGOALS)" >&2; exit 1; }; \
	  echo "creating $(VENV) with $$py"; \
	  "$$py" -m venv $(VENV); \
	fi
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test,docs]'
	@touch $(STAMP)

demo: $(STAMP)
	@echo "spikeconverter demo: starting Python (importing torch and Norse takes a few seconds) ..."
	$(VENV)/bin/spikeconverter demo --overwrite  # a rerun replaces out/demo

test: $(STAMP)
	$(VPY) -m pytest $(PYTEST_ARGS)

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=true DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build site .cache src/*.egg-info .pytest_cache
