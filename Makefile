# trajforge: every target installs what it needs (through `setup`), so each works on a fresh clone.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/demo
CONFIG ?= configs/default.yaml
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup test test-slow test-interop lint bench synth filter sft publish view eval clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	# CPU-only machines: take the CPU build of torch first so nothing pulls CUDA wheels.
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"; fi
	$(BIN)/pip install --quiet -e ".[train,dev]"
	@command -v bwrap >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null 2>&1 || \
		echo "note: bubblewrap not installed; the code sandbox falls back to namespaces + rlimits"; }
	@ldconfig -p 2>/dev/null | grep -q libseccomp.so || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && apt-get install -y -qq libseccomp2) >/dev/null 2>&1 || \
		echo "note: libseccomp2 not installed; the code sandbox runs without its seccomp filter"; }
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
		echo "note: chromium not installed; the viewer's browser tests will skip"; }
	@command -v tesseract >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && apt-get install -y -qq tesseract-ocr tesseract-ocr-eng) >/dev/null 2>&1 || \
		echo "note: tesseract not installed; the image check will not read text in crops (its OCR tests skip)"; }
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2 --dist loadfile

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

# Slow, not part of `test`: builds throwaway venvs with the real LLaMA-Factory and ms-swift
# (.cache/interop; big installs) and checks that they load the exports and train trajforge's text.
test-interop: $(STAMP)
	tests/interop/setup_envs.sh
	$(BIN)/pytest -q -s -m interop tests/interop

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

synth: $(STAMP)
	$(BIN)/trajforge synth --config $(CONFIG) --run $(RUN)

filter: $(STAMP)
	$(BIN)/trajforge filter --config $(CONFIG) --run $(RUN)

sft: $(STAMP)
	$(BIN)/trajforge sft --config $(CONFIG) --run $(RUN)

publish: $(STAMP)
	$(BIN)/trajforge publish --run $(RUN) $(if $(REPO),--repo $(REPO)) $(PUBLISH_ARGS)

view: $(STAMP)
	$(BIN)/trajforge view --run $(RUN) $(VIEW_ARGS)

# The closed loop: the student `make sft` exported, the same architecture untrained, and the
# oracle, on the world's held-out tasks (those $(RUN) did not synthesise from); one table.
# Greedy (temperature 0): a sampled slip in a tiny student's tool-call JSON costs the whole turn.
EVAL_ARGS ?= --limit 12 --set teacher.max_tokens=320 --set synth.max_turns=6 --set synth.format_retries=0 --set teacher.max_retries=1 \
	--set teacher.image_max_pixels=65536 --set teacher.temperature=0
eval: $(STAMP)
	$(BIN)/trajforge eval --run $(RUN)/evals/student --serve $(RUN)/sft/export --train-run $(RUN) --label student $(EVAL_ARGS)
	$(BIN)/trajforge eval --run $(RUN)/evals/untrained --serve $(RUN)/sft/export --untrained --train-run $(RUN) --label untrained $(EVAL_ARGS)
	$(BIN)/trajforge eval --run $(RUN)/evals/oracle --train-run $(RUN) --label oracle $(EVAL_ARGS) --set world.knobs.defects={}
	$(BIN)/trajforge eval-table student=$(RUN)/evals/student untrained=$(RUN)/evals/untrained oracle=$(RUN)/evals/oracle

clean:
	rm -rf $(VENV) runs worlds
