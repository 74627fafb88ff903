#!/usr/bin/env bash
# Throwaway virtualenvs with the real LLaMA-Factory and ms-swift for `make test-interop`.
#
# One venv per framework (their pins conflict), under $INTEROP_DIR (default .cache/interop, ignored
# by git). torch and torchvision are installed first and pinned by a constraints file, so a
# framework's dependencies can never swap in another torch build. Both frameworks need a torchvision
# that imports with the installed torch (transformers' Qwen3VLProcessor needs its video processor):
# where a CPU torchvision exists (download.pytorch.org/whl/cpu) set TORCH_SPEC/TORCHVISION_SPEC to it;
# the defaults are the builds this project's registry carries, which run on the CPU.
# A framework whose install fails is recorded in <venv>/.failed with pip's last lines; its tests skip
# with that message instead of failing the suite. Re-running the script is cheap (pip skips what is met).
set -uo pipefail
ROOT=${INTEROP_DIR:-.cache/interop}
PY=${PY:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
TORCHVISION_SPEC=${TORCHVISION_SPEC:-torchvision==0.29.1}
LLAMAFACTORY_SPEC=${LLAMAFACTORY_SPEC:-llamafactory==0.9.5}
MS_SWIFT_SPEC=${MS_SWIFT_SPEC:-ms-swift==4.6.0 qwen_vl_utils==0.0.14}
# The AutoProcessor tests (tests/sft/test_sft_processor.py) also run in these venvs, on this checkout's
# code: the trajforge dependencies that code imports come along, at the ranges pyproject.toml pins.
TRAJFORGE_NEEDS=${TRAJFORGE_NEEDS:-json-repair opencv-python-headless}
TRAJFORGE_IMPORTS="import pipeline.lenient, pipeline.phash, stages.sft.formatter, stages.sft.processor, stages.sft.synthetic"
HERE=$(cd "$(dirname "$0")/../.." && pwd)
pinned() {  # the requirement pyproject.toml writes for each name, e.g. "json-repair>=0.40,<1"
  local name spec
  for name in "$@"; do
    spec=$(grep -oE "\"$name[<>=!~ ][^\"]*\"" "$HERE/pyproject.toml" | head -n 1 | tr -d '"')
    echo "${spec:-$name}"
  done
}
TRAJFORGE_SPECS=$(pinned $TRAJFORGE_NEEDS | tr '\n' ' ')
mkdir -p "$ROOT"
CONSTRAINTS="$ROOT/constraints.txt"
printf '%s\n%s\n' "$TORCH_SPEC" "$TORCHVISION_SPEC" > "$CONSTRAINTS"

build() {  # build NAME SPEC (SPEC is word-split: it may name several packages)
  local name=$1 spec=$2
  local venv="$ROOT/$name" log="$ROOT/$name.log"
  local stamp="$spec $TORCH_SPEC $TORCHVISION_SPEC $TRAJFORGE_SPECS"
  if [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "$stamp" ]; then
    echo "interop: $name ready ($venv)"; return 0
  fi
  rm -f "$venv/.installed" "$venv/.failed"
  echo "interop: building $name in $venv ($stamp); log: $log"
  if ! { { [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"; } &&
         "$venv/bin/pip" install --quiet --upgrade pip wheel &&
         "$venv/bin/pip" install --quiet "$TORCH_SPEC" "$TORCHVISION_SPEC" &&
         PIP_CONSTRAINT="$CONSTRAINTS" "$venv/bin/pip" install --quiet $spec $TRAJFORGE_SPECS pytest &&
         "$venv/bin/python" -c "import torch, torchvision, transformers; from transformers import Qwen3VLProcessor" &&
         (cd "$HERE" && PYTHONPATH="$HERE" "$venv/bin/python" -c "$TRAJFORGE_IMPORTS"); } \
       > "$log" 2>&1; then
    mkdir -p "$venv"
    { echo "install of $spec failed (full log: $log):"; grep -v '^WARNING: Location' "$log" | tail -n 15; } > "$venv/.failed"
    echo "interop: $name install FAILED; its tests will skip:"; cat "$venv/.failed"
    return 0
  fi
  "$venv/bin/pip" freeze > "$venv/freeze.txt" 2>/dev/null
  echo "$stamp" > "$venv/.installed"
  echo "interop: $name ready: $(grep -i -E '^(torch|torchvision|transformers|llamafactory|ms.swift)==' "$venv/freeze.txt" | tr '\n' ' ')"
}

build llamafactory "$LLAMAFACTORY_SPEC" &
build ms-swift "$MS_SWIFT_SPEC" &
wait
