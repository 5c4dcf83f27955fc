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

.PHONY: run test test-fast rehearse install clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-offline.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

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
# venv holding only what Colab preinstalls; `pip install -r requirements.txt` with the pip a new
# venv ships; the notebook against a Milvus server of each engine.
rehearse: install
	$(BIN)/python tests/colab/rehearse.py
	$(BIN)/python tests/install/stock_pip.py
	$(BIN)/python -m pytest -m rehearsal -p no:cacheprovider tests/test_server_notebook.py
	$(BIN)/python tests/browser/rehearse.py

clean:
	rm -rf $(VENV) .cache notebooks/executed notebooks/milvus_demo.db data/milvus_docs data/*.zip
