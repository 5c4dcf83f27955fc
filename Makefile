# Two commands do all the set-up on a fresh machine:
#   make run    execute the notebook headlessly into notebooks/executed/ (no key, no network needed)
#   make test   lint (ruff, notebooks included), scan for keys and machine paths, run every test
# Both create .venv and install the project's requirements into it on first use.
# For development: make test-fast (the fast tier, after every edit); CI also runs make rehearse.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NOTEBOOK := notebooks/build_RAG_with_milvus_and_lepton.ipynb
SHARED_ZIP := ../shared/data/milvus_docs_2.4.x_en.zip
LOCK := requirements-lock.txt

.PHONY: run test test-fast rehearse install lock clean mutate

install: $(VENV)/.installed

# Exactly the lock (hash-checked, nothing resolved), then torch, the one package outside it
# (its pin in requirements-offline.txt; its dependencies are in the lock), then this package;
# pip check confirms the set is whole. `make lock` rewrites the lock (see the README).
$(VENV)/.installed: $(LOCK) requirements-offline.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-offline.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

# The newest versions requirements-dev.txt allows, resolved anew into requirements-lock.txt.
# Then run make test (and make rehearse) before committing it.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python scripts/lock.py

# Uses a local docs zip when one lies beside the checkout (as on CI machines), else downloads it.
run: install
	mkdir -p notebooks/executed
	cd notebooks && RAG_PROGRESS=text $(abspath $(BIN))/papermill $(notdir $(NOTEBOOK)) \
	  executed/$(notdir $(NOTEBOOK)) \
	  $(if $(and $(wildcard $(SHARED_ZIP)),$(if $(MILVUS_DOCS_ZIP),,1)),-p DOCS_SOURCE $(abspath $(SHARED_ZIP)))

test: install
	$(BIN)/ruff check .
	$(BIN)/python scripts/check_secrets.py
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow" -q

# The paths no test machine takes by itself: Colab's first cell (clone, pinned installs) in a
# venv holding only what Colab preinstalls; the notebook against a Milvus server of each engine;
# the engine tests, the CLI and the notebook against a Milvus 2.3 standalone (private network);
# JupyterLab in a browser; both ends of the requirements' ranges (the newest versions of the day,
# through `pip install -r requirements.txt` with the pip a new venv ships, and every lower
# bound); the newest CPython Debian's source packages give (built once, outside the checkout).
rehearse: install
	$(BIN)/python tests/colab/rehearse.py
	$(BIN)/python -m pytest -m rehearsal -p no:cacheprovider tests/test_server_notebook.py
	$(BIN)/python tests/standalone/rehearse.py
	$(BIN)/python tests/browser/rehearse.py
	$(BIN)/python tests/install/version_ranges.py
	$(BIN)/python tests/install/version_ranges.py --lowest
	$(BIN)/python tests/install/newest_python.py

# Mutation testing (mutmut; not part of make test or CI): small changes ("mutants") are made to
# search, evaluation, index, chunking, corpus and generation one at a time, and each should make
# the fast tier fail. Prints killed / total per module; tests/MUTANTS.md lists the survivors
# left on purpose. A fresh run each time (over an hour on 2 cores); MUTANTS='milvus_rag.search.*'
# runs one module. Then: $(BIN)/mutmut results (survivors), $(BIN)/mutmut show NAME (a diff).
MUTMUT_VERSION := 3.8.1
MUTANTS ?=
mutate: install
	$(BIN)/python -m pip install --quiet mutmut==$(MUTMUT_VERSION)
	rm -rf mutants && mkdir mutants
	printf '%s\n' pytest nbformat nbmake.pytest_items nbmake.pytest_plugin numpy > mutants/preload.txt
	@echo "mutmut run$(if $(MUTANTS), '$(MUTANTS)'): progress in mutants/run.log"
	MILVUS_DOCS_ZIP=$${MILVUS_DOCS_ZIP:-$(abspath $(SHARED_ZIP))} $(BIN)/mutmut run $(if $(MUTANTS),'$(MUTANTS)') \
	  >mutants/run.log 2>&1 || { tr '\r' '\n' <mutants/run.log | tail -40; exit 1; }
	@$(BIN)/mutmut results --all true | awk -F': ' ' \
	  { split($$1, name, "."); m = name[2]; s = $$2; if (s == "not checked") next; \
	    total[m]++; all++; \
	    if (s == "killed" || s == "timeout" || s == "segfault") { killed[m]++; k++ } \
	    else if (s == "survived") survived[m]++; else if (s == "no tests") untested[m]++; \
	    else other[m]++ } \
	  END { printf "%-12s %15s %8s %9s %9s %6s\n", "module", "killed / total", "score", \
	          "survived", "no tests", "other"; \
	        for (m in total) printf "%-12s %7d / %5d %7.1f%% %9d %9d %6d\n", m, killed[m], \
	          total[m], 100 * killed[m] / total[m], survived[m], untested[m], other[m]; \
	        if (all) printf "%-12s %7d / %5d %7.1f%%\n", "all", k, all, 100 * k / all; \
	        else print "no mutant was checked" }'

clean:
	rm -rf $(VENV) .cache notebooks/executed notebooks/executed.ipynb notebooks/milvus_demo.db data/milvus_docs data/*.zip
