#!/usr/bin/env bash
# One prepared run for a lent GPU machine (`run` tool): the CUDA-only tests, then the GPU benchmarks.
# The machine has torch + CUDA but no network: the package runs from the checkout (PYTHONPATH), and a
# missing dependency is reported, not installed (carry a wheelhouse for it: pip install --no-index -f DIR).
# MNIST and Fashion-MNIST must be in an ignored folder of the checkout that is carried (default .data/mnist and
# .data/fashion-mnist, 41 MB: cp -r ../shared/data/mnist ../shared/data/fashion-mnist .data/), and so must
# GPT-2's token file (.data/bbc_news-smollm2, 2.3 MB; made on the CPU side, where the tokenizer is, with
# `python -m steepest.data.corpus --out .data/bbc_news-smollm2`): carry [".data"].
#   run: bash benchmarks/gpu_session.sh          (results: benchmarks/results/*_gpu.md, copied to $OUT)
#   run tool: timeout_s 600, carry [".data"]; GPU_SESSION_BUDGET (default 540 s) bounds the stages together.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" STEEPEST_DATA_DIR="${STEEPEST_DATA_DIR:-$PWD/.data}"
if [ -d .wheels ]; then python -m pip install -q --no-index -f .wheels pydantic safetensors scikit-learn pyyaml tqdm 2>&1 | tail -2; fi
python - <<'PY' || exit 3
import importlib, sys, torch
missing = [m for m in ("pydantic", "safetensors", "sklearn", "yaml", "tqdm") if importlib.util.find_spec(m) is None]
print(f"torch {torch.__version__}, cuda {torch.cuda.is_available()} ({torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'})")
if missing or not torch.cuda.is_available():
    sys.exit(f"cannot run: missing {missing or 'a CUDA device'}")
PY
status=0
# One budget for the whole session (the lent machine has ~15 minutes, its start-up included): every stage
# gets what is left, capped, in order of value; a stage that does not fit is reported as skipped, and each
# benchmark prints its rows as it goes, so a stage cut short still leaves its figures in the log.
BUDGET=${GPU_SESSION_BUDGET:-540}
LOG=${OUT:+$OUT/gpu_session.log}; LOG=${LOG:-/dev/null}  # the whole log comes back with the results (the tool shows only its tail)
START=$SECONDS
stage() {  # stage NAME CAP_SECONDS COMMAND...
  local name=$1 cap=$2; shift 2
  local left=$((BUDGET - (SECONDS - START)))
  if [ "$left" -lt 45 ]; then echo "== $name: SKIPPED ($left s left of the $BUDGET s budget)"; status=1; return; fi
  [ "$cap" -gt "$left" ] && cap=$left
  echo "== $name (at most $cap s; $((SECONDS - START)) s used)"
  local t0=$SECONDS
  timeout --kill-after=10 "$cap" "$@" 2>&1 | tee -a "$LOG"; local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || status=1
}
stage "CUDA tests" 150 python -m pytest tests/gpu -q -p no:cacheprovider --durations=10
stage "optimizer step bandwidth" 120 python benchmarks/optim_step.py --device cuda --repeats 10 \
  --only adamw,adam,lamb,lars,lion,nadam,radam,momentum,sgd,rangerlars --out optim_step_gpu.md
stage "trainer vs raw loop" 75 python benchmarks/trainer_overhead.py --devices cuda --repeats 3 --out trainer_overhead_gpu.md
if [ -d "$STEEPEST_DATA_DIR/mnist" ] && [ -d "$STEEPEST_DATA_DIR/fashion-mnist" ]; then
  stage "speed recipes" 170 python benchmarks/speedrun.py --device cuda --time-limit 120 --out speedrun_gpu.md
else
  echo "speed recipes skipped: no $STEEPEST_DATA_DIR/mnist or fashion-mnist (cp -r ../shared/data/mnist ../shared/data/fashion-mnist .data/)"; status=1
fi
if [ -f "$STEEPEST_DATA_DIR/bbc_news-smollm2/tokens.npy" ]; then
  stage "GPT-2 124M" 120 python benchmarks/gpt2.py --device cuda --tokens "$STEEPEST_DATA_DIR/bbc_news-smollm2" --out gpt2_gpu.md
else
  echo "GPT-2 skipped: no $STEEPEST_DATA_DIR/bbc_news-smollm2/tokens.npy (python -m steepest.data.corpus --out .data/bbc_news-smollm2)"; status=1
fi
[ -d "$STEEPEST_DATA_DIR/mnist" ] && stage "time to accuracy" 90 python benchmarks/time_to_accuracy.py --device cuda --out time_to_accuracy_gpu.md
echo "== session: $((SECONDS - START)) s of the $BUDGET s budget; exit $status"
[ -n "${OUT:-}" ] && cp benchmarks/results/*_gpu.md "$OUT"/ 2>/dev/null
exit $status
