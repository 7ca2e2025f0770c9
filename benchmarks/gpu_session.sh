#!/usr/bin/env bash
# One prepared run for a lent GPU machine (`run` tool): the CUDA-only tests, then the GPU benchmarks.
# The machine has torch + CUDA but no network: the package runs from the checkout (PYTHONPATH), and a
# missing dependency is reported, not installed (carry a wheelhouse for it: pip install --no-index -f DIR).
# MNIST and Fashion-MNIST must be in an ignored folder of the checkout that is carried (default .data/mnist and
# .data/fashion-mnist, 41 MB: cp -r ../shared/data/mnist ../shared/data/fashion-mnist .data/), and so must
# GPT-2's token file (.data/bbc_news-smollm2, 2.3 MB; made on the CPU side, where the tokenizer is, with
# `python -m steepest.data.corpus --out .data/bbc_news-smollm2`): carry [".data"].
#   run: bash benchmarks/gpu_session.sh          (results: benchmarks/results/*_gpu.md, copied to $OUT)
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
python -m pytest tests/gpu -q -p no:cacheprovider -x || status=1
python benchmarks/optim_step.py --device cuda --out optim_step_gpu.md || status=1
python benchmarks/trainer_overhead.py --devices cuda --out trainer_overhead_gpu.md || status=1
[ -d "$STEEPEST_DATA_DIR/mnist" ] && { python benchmarks/time_to_accuracy.py --device cuda --out time_to_accuracy_gpu.md || status=1; }
if [ -d "$STEEPEST_DATA_DIR/mnist" ] && [ -d "$STEEPEST_DATA_DIR/fashion-mnist" ]; then  # mnist_speedrun, fashion_speedrun (~2-3 min)
  timeout 300 python benchmarks/speedrun.py --device cuda --time-limit 150 --out speedrun_gpu.md || status=1
else
  echo "speed recipes skipped: no $STEEPEST_DATA_DIR/mnist or fashion-mnist (cp -r ../shared/data/mnist ../shared/data/fashion-mnist .data/)"; status=1
fi
if [ -f "$STEEPEST_DATA_DIR/bbc_news-smollm2/tokens.npy" ]; then  # GPT-2 124M, bf16, compiled: raw loop vs Trainer (~2 min)
  timeout 300 python benchmarks/gpt2.py --device cuda --tokens "$STEEPEST_DATA_DIR/bbc_news-smollm2" --out gpt2_gpu.md || status=1
else
  echo "GPT-2 skipped: no $STEEPEST_DATA_DIR/bbc_news-smollm2/tokens.npy (python -m steepest.data.corpus --out .data/bbc_news-smollm2)"; status=1
fi
[ -n "${OUT:-}" ] && cp benchmarks/results/*_gpu.md "$OUT"/ 2>/dev/null
exit $status
