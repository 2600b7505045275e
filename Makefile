# Set-up and the two Quickstart commands. TORCH_SPEC picks the torch build: CI and CPU-only machines
# use e.g. TORCH_SPEC='torch==2.13.0' (a CPU wheel), users get the normal `torch` from PyPI.
# The tests get their own venv: the test extras pin some libraries lower (datumaro: pillow~=12.0, pandas~=2.3), and
# sharing one venv made `make test` downgrade Pillow under the demo (whose embedding cache is keyed by its version).
PYTHON ?= python3
VENV ?= .venv
TEST_VENV ?= .venv-test
TORCH_SPEC ?= torch
PIP = $(VENV)/bin/pip
DEMO_OUT ?= demo-out

.PHONY: demo test lint bench train-tiny clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(TEST_VENV)/bin/python:
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e .
	touch $@

$(TEST_VENV)/.installed-test: $(TEST_VENV)/bin/python pyproject.toml
	$(TEST_VENV)/bin/pip install --quiet "$(TORCH_SPEC)"
	$(TEST_VENV)/bin/pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/python examples/tiny-shapes/make_images.py $(DEMO_OUT)/images --n 240 --messy
	HF_HUB_OFFLINE=1 $(VENV)/bin/autolabel run $(DEMO_OUT)/images/manifest.csv \
		--labels examples/tiny-shapes/labels.yaml --out $(DEMO_OUT)/labels.parquet \
		--summary-json $(DEMO_OUT)/summary.json --cache-dir $(DEMO_OUT)/cache
	$(VENV)/bin/autolabel eval $(DEMO_OUT)/labels.parquet --truth truth --json $(DEMO_OUT)/metrics.json
	$(VENV)/bin/autolabel report $(DEMO_OUT)/labels.parquet --truth truth --out $(DEMO_OUT)/report.html
	@echo ""
	@echo "== round 2: part codes the model cannot know; a person reviews the 24 images autolabel queue picks =="
	HF_HUB_OFFLINE=1 $(VENV)/bin/autolabel run $(DEMO_OUT)/images/manifest.csv \
		--labels examples/tiny-shapes/codes.yaml --out $(DEMO_OUT)/codes-round1.parquet --cache-dir $(DEMO_OUT)/cache -q
	HF_HUB_OFFLINE=1 $(VENV)/bin/autolabel queue $(DEMO_OUT)/codes-round1.parquet --budget 24 \
		--out $(DEMO_OUT)/queue.csv --cache-dir $(DEMO_OUT)/cache -q
	$(VENV)/bin/python examples/tiny-shapes/simulate_review.py $(DEMO_OUT)/queue.csv \
		$(DEMO_OUT)/images/manifest.csv --out $(DEMO_OUT)/corrections.csv --truth $(DEMO_OUT)/codes-truth.csv
	HF_HUB_OFFLINE=1 $(VENV)/bin/autolabel run $(DEMO_OUT)/images/manifest.csv \
		--labels examples/tiny-shapes/codes.yaml --out $(DEMO_OUT)/codes-round2.parquet --cache-dir $(DEMO_OUT)/cache \
		--examples $(DEMO_OUT)/corrections.csv --summary-json $(DEMO_OUT)/codes-summary.json -q
	$(VENV)/bin/autolabel eval $(DEMO_OUT)/codes-round1.parquet --truth $(DEMO_OUT)/codes-truth.csv | tail -n 4
	$(VENV)/bin/autolabel eval $(DEMO_OUT)/codes-round2.parquet --truth $(DEMO_OUT)/codes-truth.csv | tail -n 4
	@echo ""
	@echo "labels:  $(DEMO_OUT)/labels.parquet  (one row per image: label, confidence, margin, status, top-k)"
	@echo "report:  $(DEMO_OUT)/report.html  (open in a browser; its review queue is editable: 1-9, arrows, Enter)"
	@echo "metrics: $(DEMO_OUT)/metrics.json, run summary: $(DEMO_OUT)/summary.json"
	@echo "round 2: $(DEMO_OUT)/codes-round1.parquet (zero-shot) → $(DEMO_OUT)/queue.csv (the 24 rows to review, filled in"
	@echo "         by simulate_review.py in order) → $(DEMO_OUT)/codes-round2.parquet (learnt from them)"

test: $(TEST_VENV)/.installed-test
	HF_HUB_OFFLINE=1 $(TEST_VENV)/bin/python -m pytest

lint: $(TEST_VENV)/.installed-test
	$(TEST_VENV)/bin/ruff check autolabel tests benchmarks examples

bench: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/throughput.py

train-tiny: $(VENV)/.installed
	$(VENV)/bin/python examples/tiny-shapes/train.py

clean:
	rm -rf $(VENV) $(TEST_VENV) $(DEMO_OUT) .pytest_cache
