"""Golden training runs: the first 20 logged train_loss values of bundled recipes, recorded before
the build seam was reworked (issue "Assemble a run once"). `python tests/run/golden.py` rewrites
tests/run/golden_train_loss.json from the current code; do that only when a change is meant to
alter training, and say so in the commit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN_FILE = HERE / "golden_train_loss.json"

# 40 steps, a value every 2 steps: crosses epoch boundaries, evaluation and early-stopping bookkeeping.
COMMON = ["trainer.max_steps=40", "trainer.max_epochs=null", "trainer.log_every_n_steps=2", "checkpoint.enabled=false"]
CASES = {
    "digits_mlp": ("digits_mlp", []),
    "breast_cancer_sgd": ("breast_cancer_sgd", []),  # momentum, accumulation over 2 micro-batches
    "digits_mixup_ema": ("digits_mlp", ["batch_transform={name: mixup, alpha: 0.4}", "callbacks=[{name: ema, decay: 0.9}]",
                                        "schedules.weight_decay={name: cosine}"]),
}


def train_losses(case: str, run_dir: Path) -> list[float]:
    from steepest.cli import main
    from steepest.track import read_series

    recipe, extra = CASES[case]
    args = [x for s in [*COMMON, *extra] for x in ("--set", s)]
    assert main(["train", recipe, "--run-dir", str(run_dir), "-q", *args]) == 0
    return [v for _, v in read_series(run_dir / "metrics.db", "train_loss")][:20]


if __name__ == "__main__":
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            out[case] = train_losses(case, Path(tmp) / case)
            print(case, out[case][:3], file=sys.stderr)
    GOLDEN_FILE.write_text(json.dumps(out, indent=1) + "\n")
