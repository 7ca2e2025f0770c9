"""Speed recipes: `mnist_speedrun` and `fashion_speedrun` as `steepest train` builds them, timed per
seed on one device, against the goals of issue 15.

    python benchmarks/speedrun.py --device cuda --out speedrun_gpu.md     # what benchmarks/gpu_session.sh runs
    python benchmarks/speedrun.py --device cpu --quick                    # the script end to end on a tiny budget

Each goal is one recipe at one budget (a row):

    mnist_speedrun, short (--set trainer.max_epochs=2 --set data.augment=null)   99.0% in <= 0.5 s, 10 seeds
    mnist_speedrun, as bundled (8 epochs)                                       99.5% in <= 2 s,   10 seeds
    fashion_speedrun, short (--set trainer.max_epochs=10)                        93.0% in <= 3 s,   5 seeds
    fashion_speedrun, as bundled (30 epochs)                                    94.0% in <= 10 s,  5 seeds

and, the budgets being estimates (no GPU was at hand when they were chosen), MNIST at 1 epoch and
Fashion-MNIST at 15 against the short goals.

Per row: one untimed warm-up run (3 steps and a test evaluation, seed 1000) compiles the training and
evaluation graphs; its wall time is reported as the compile time (later rows of the same network reuse
the graphs: the speed recipes share one). Then, per seed, a fresh run is built by
`steepest.run.build_run` (model, optimizer, loader, Trainer; untimed) and `trainer.fit()` is timed
between two `torch.cuda.synchronize()` calls: the wall time of training, host overhead included,
evaluation excluded (the recipes evaluate only at the end). The test split (the official 10,000
images) is then evaluated as the recipe says (test-time flips for Fashion-MNIST), and once more
without flips for comparison. The data is read once per data set and kept on the device. Graphs
compiled during the timed runs are counted: a figure with recompiles says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, report  # noqa: E402

from steepest.config import load_recipe  # noqa: E402
from steepest.data import Split, load_data  # noqa: E402
from steepest.run.build import build_run  # noqa: E402
from steepest.training.precision import autocast  # noqa: E402


@dataclass(frozen=True)
class Row:
    recipe: str
    label: str
    overrides: tuple[str, ...]
    seeds: int
    goal_accuracy: float
    goal_seconds: float


ROWS = (  # the goals' budgets first; then one other budget per short goal (cut to 2 seeds if time runs out)
    Row("mnist_speedrun", "short", ("trainer.max_epochs=2", "data.augment=null"), 10, 0.990, 0.5),
    Row("mnist_speedrun", "bundled", (), 10, 0.995, 2.0),
    Row("fashion_speedrun", "short", ("trainer.max_epochs=10",), 5, 0.930, 3.0),
    Row("fashion_speedrun", "bundled", (), 5, 0.940, 10.0),
    Row("mnist_speedrun", "1 epoch", ("trainer.max_epochs=1", "data.augment=null"), 10, 0.990, 0.5),
    Row("fashion_speedrun", "15 epochs", ("trainer.max_epochs=15",), 5, 0.930, 3.0),
)
# --quick: the same code path on a budget a 2-core CPU runs in a minute: one epoch of 2,048 training
# images (16 steps), narrow layers, fp32 (bf16 autocast runs on the CPU but is emulated without
# AVX512-BF16), no compile unless --compile, 500 test images; the figures check the script, nothing more.
QUICK = ("data.subset=2048", "data.batch_size=128", "model.channels=[8, 16, 32]", "model.hidden=32", "trainer.max_epochs=1",
         "trainer.precision=fp32")


@dataclass
class Result:
    row: Row
    accuracies: list[float] = field(default_factory=list)
    plain_accuracies: list[float] = field(default_factory=list)  # without test-time flips
    seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    steps: int = 0
    compile_seconds: float = 0.0
    recompiles: int = 0
    error: str = ""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def graphs_compiled() -> int:
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - torch without dynamo
        return 0
    return int(counters["stats"]["unique_graphs"])


@torch.no_grad()
def plain_accuracy(trainer, split: Split, precision: str, batch: int) -> float:
    """Test accuracy of the trained model on the images alone (no test-time flips)."""
    model = trainer.model
    model.eval()
    right = torch.zeros((), dtype=torch.long, device=split.x.device)
    with autocast(split.x.device, precision):
        for i in range(0, len(split), batch):
            right += (model(split.x[i:i + batch]).argmax(-1) == split.y[i:i + batch]).sum()
    return int(right) / len(split)


def run_row(row: Row, device: torch.device, extra: list[str], data_cache: dict, test_limit: int | None,
            seeds: int, deadline: float) -> Result:
    result = Result(row)
    sets = [*row.overrides, *extra, f"trainer.device={device.type}"]
    recipe = load_recipe(row.recipe, sets)
    key = recipe.data.model_dump_json()
    if key not in data_cache:
        data = load_data(recipe.data, recipe.trainer.seed)
        if test_limit is not None:
            data = dataclasses.replace(data, test=Split(data.test.x[:test_limit], data.test.y[:test_limit]))
        data_cache[key] = data.to(device)
    data = data_cache[key]

    start = time.perf_counter()  # the warm-up: compiles the training step and the evaluation
    warm = build_run(load_recipe(row.recipe, [*sets, "trainer.seed=1000", "trainer.max_steps=3"]), None, data=data, console=False)
    warm.trainer.fit()
    warm.trainer.evaluate("test")
    plain_accuracy(warm.trainer, data.test, recipe.trainer.precision, recipe.data.eval_batch_size or 1000)
    sync(device)
    result.compile_seconds = time.perf_counter() - start
    del warm

    graphs = graphs_compiled()
    for seed in range(seeds):
        if seed >= 2 and time.perf_counter() > deadline:
            break  # the session's time is up: report the seeds done so far
        run = build_run(load_recipe(row.recipe, [*sets, f"trainer.seed={seed}"]), None, data=data, console=False)
        sync(device)
        t0 = time.perf_counter()
        run.trainer.fit()
        sync(device)
        t1 = time.perf_counter()
        metrics = run.trainer.evaluate("test")
        sync(device)
        result.seconds.append(t1 - t0)
        result.eval_seconds.append(time.perf_counter() - t1)
        result.accuracies.append(metrics["test_accuracy"])
        result.plain_accuracies.append(plain_accuracy(run.trainer, data.test, recipe.trainer.precision,
                                                      recipe.data.eval_batch_size or 1000))
        result.steps = run.trainer.state.step
        print(f"{row.recipe} ({row.label}) seed {seed}: test accuracy {result.accuracies[-1]:.4f} "
              f"(without TTA {result.plain_accuracies[-1]:.4f}), training {result.seconds[-1]:.3f} s, "
              f"{result.steps} steps", flush=True)
        del run
    result.recompiles = graphs_compiled() - graphs
    return result


def table(results: list[Result], quick: bool) -> list[str]:
    lines = ["| recipe | budget | seeds | test accuracy mean | min | max | training s (mean) | min | steps | compile s | "
             "eval s | without TTA (mean) | goal | met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        goal = f"{r.row.goal_accuracy:.1%} in ≤ {r.row.goal_seconds:g} s"
        budget = " ".join(f"`{o}`" for o in r.row.overrides) or "as bundled"
        if r.error or not r.accuracies:
            lines.append(f"| {r.row.recipe} | {budget} | 0 | — | — | — | — | — | — | — | — | — | {goal} | error: {r.error} |")
            continue
        acc, secs = statistics.mean(r.accuracies), statistics.mean(r.seconds)
        met = "n/a (quick)" if quick else ("yes" if acc >= r.row.goal_accuracy and secs <= r.row.goal_seconds else "no")
        note = f" ({r.recompiles} graphs compiled while timed)" if r.recompiles else ""
        lines.append(f"| {r.row.recipe} | {budget} | {len(r.accuracies)} | {acc:.2%} | {min(r.accuracies):.2%} | "
                     f"{max(r.accuracies):.2%} | {secs:.3f}{note} | {min(r.seconds):.3f} | {r.steps} | {r.compile_seconds:.1f} | "
                     f"{statistics.mean(r.eval_seconds):.3f} | {statistics.mean(r.plain_accuracies):.2%} | {goal} | {met} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny budget: checks the script, not the recipes")
    parser.add_argument("--only", default=None, help="comma-separated recipe names (default: both)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per row (default: 10 MNIST, 5 Fashion-MNIST; 2 with --quick)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="an extra override for every row (KEY=VALUE)")
    parser.add_argument("--compile", action="store_true", help="with --quick: keep trainer.compile (slow on a CPU)")
    parser.add_argument("--time-limit", type=float, default=150.0, help="seconds; rows past it stop after 2 seeds")
    parser.add_argument("--out", default=None, help="results file name under benchmarks/results/ (a GPU run: speedrun_gpu.md)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.out and "_gpu" in args.out and (device.type != "cuda" or args.quick):
        parser.error("a *_gpu.md file holds GPU figures of the full budget: run with --device cuda and without --quick")
    extra = [*(QUICK if args.quick else ()), *([] if not args.quick or args.compile else ["trainer.compile=false"]), *args.sets]
    rows = [r for r in ROWS if args.only is None or r.recipe in args.only.split(",")]
    deadline = time.perf_counter() + args.time_limit
    data_cache: dict = {}
    results = []
    for row in rows:
        seeds = args.seeds or (2 if args.quick else row.seeds)
        try:
            results.append(run_row(row, device, extra, data_cache, 500 if args.quick else None, seeds, deadline))
        except Exception as exc:  # noqa: BLE001 - one failing row must not lose the others' figures
            results.append(Result(row, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"))
            print(f"{row.recipe} ({row.label}) failed: {results[-1].error}", flush=True)
    lines = [f"# Speed recipes: MNIST and Fashion-MNIST{' (quick check, not a result)' if args.quick else ''}", "",
             header(device), "",
             "Each row: the recipe as `steepest train` builds it (steepest.run.build_run) with the overrides shown"
             f"{' plus ' + ' '.join(f'`{s}`' for s in extra) if extra else ''}; training time = `trainer.fit()` between "
             "two device synchronizations (host overhead included, evaluation and the untimed compile warm-up excluded); "
             "test accuracy on the official 10,000 test images" + (" (500 here)" if args.quick else "") +
             ", as the recipe evaluates it (Fashion-MNIST: with test-time flips) and without flips.", "",
             *table(results, args.quick)]
    report(lines, args.out)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
