# Fresh-machine entry points. `make test` and `make demo` set up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo slurm-tools latex-tools

setup: $(STAMP)

$(STAMP): requirements.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip<26.2"
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# two processes, each running whole test files in order (a file's tests may build on each
# other), each computing on one thread (torch's default of one per core would oversubscribe)
test: $(STAMP) slurm-tools latex-tools
	OMP_NUM_THREADS=1 $(PY) -m pytest -q --numprocesses 2 --dist loadfile

# tests/test_slurm.py starts a one-node cluster from Debian's slurm-wlm and munge: installed
# here, quietly, when missing and we are root on a Debian-like system (elsewhere those tests
# skip, saying why).
slurm-tools:
	@export PATH="$$PATH:/usr/sbin:/sbin"; \
	if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing slurm-wlm and munge for the Slurm tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      slurm-wlm munge; } >/dev/null 2>&1 \
	      || echo "could not install slurm-wlm and munge: the Slurm tests will skip"; \
	  fi; \
	fi

# tests/test_compare.py compiles the LaTeX tables with pdflatex (booktabs): Debian's TeX Live
# base and recommended packages, installed the same way (elsewhere that test skips).
latex-tools:
	@if ! command -v pdflatex >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing texlive-latex-base and texlive-latex-recommended for the LaTeX test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends texlive-latex-base texlive-latex-recommended; } \
	      >/dev/null 2>&1 || echo "could not install TeX Live: the LaTeX test will skip"; \
	  fi; \
	fi

demo: $(STAMP)
	$(PY) scripts/demo.py
