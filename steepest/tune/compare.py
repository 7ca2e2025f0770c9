"""Optimizer comparison: the same recipe, seed, data order and step budget, one optimizer at a time.

Each optimizer runs with its own documented defaults (SGD's lr is not Lion's), unless given its
own lr (`lrs`) or its LR-range-test suggestion (`lr_from_finder=True`); the table says which
(`lr_source`: default, given or finder). Results: a table (final and best val metrics, wall time)
and a PNG of the loss curves in the comparison directory.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from steepest.config import Recipe, recipe_from_dict, recipe_to_dict
from steepest.config.validate import validate_recipe
from steepest.errors import ConfigError
from steepest.run import build_run, train
from steepest.track import read_series
from steepest.tune.lr_finder import range_test


@dataclass
class CompareRow:
    optimizer: str
    lr: float
    summary: dict
    lr_source: str = "default"

    def cells(self) -> dict:
        s = self.summary
        best = s.get("best_val_loss")
        return {"optimizer": self.optimizer, "lr": self.lr, "lr_source": self.lr_source, "val_loss": s.get("val_loss"), "best_val_loss": best,
                "val_accuracy": s.get("val_accuracy", s.get("val_r2")), "test_accuracy": s.get("test_accuracy", s.get("test_r2")),
                "seconds": s.get("wall_seconds")}


def recipe_for(recipe: Recipe, optimizer: str, lr: float | None) -> Recipe:
    """The recipe with `optimizer` at its own default hyperparameters (its lr, its weight decay), or
    at `lr` when given."""
    data = recipe_to_dict(recipe)
    data["optimizer"] = {"name": optimizer, **({"lr": lr} if lr is not None else {})}
    data["checkpoint"]["enabled"] = False
    return recipe_from_dict(data)


def compare(recipe: Recipe, optimizers: list[str], out_dir: Path, lrs: dict[str, float] | None = None,
            lr_from_finder: bool = False, console: bool = False) -> list[CompareRow]:
    out_dir = Path(out_dir)
    rows: list[CompareRow] = []
    recipes = {name: recipe_for(recipe, name, (lrs or {}).get(name)) for name in optimizers}
    for r in recipes.values():
        validate_recipe(r)  # every name checked before the first run starts
    for name in optimizers:  # and every run's folder: a compare into an earlier one's --out stops before any training
        if (out_dir / name).is_dir() and any((out_dir / name).iterdir()):
            raise ConfigError(f"compare --out {out_dir}: {out_dir / name} already holds a run (an earlier compare?); give another --out")
    ignored = {k: v for k, v in recipe_to_dict(recipe)["optimizer"].items() if k not in ("name", "component") and v not in (None, False, "none", {})}
    if ignored:
        shown = ", ".join(f"{k} {v}" for k, v in ignored.items())
        warnings.warn(f"compare: each optimizer runs at its own defaults (lr, weight decay) or --lr NAME=LR; the recipe's optimizer "
                      f"settings ({shown}) are not used", stacklevel=2)
    for name, r in recipes.items():
        source = "given" if name in (lrs or {}) else "default"
        if lr_from_finder and source == "default":
            run = build_run(r, None, console=False)
            r, source = recipe_for(recipe, name, range_test(run.trainer).suggested_lr), "finder"
        summary = train(r, out_dir / name, console=console)
        val = read_series(out_dir / name / "metrics.db", "val_loss")
        summary["best_val_loss"] = min((v for _, v in val if math.isfinite(v)), default=None)
        rows.append(CompareRow(name, r.optimizer.lr, summary, source))
    (out_dir / "comparison.json").write_text(json.dumps([row.cells() for row in rows], indent=2))
    (out_dir / "comparison.md").write_text(format_table(rows) + "\n")
    plot_curves(out_dir, [row.optimizer for row in rows])
    return rows


def format_table(rows: list[CompareRow]) -> str:
    cells = [row.cells() for row in rows]
    if not cells:
        return ""
    keys = list(cells[0])

    def fmt(v):
        return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(c[k]) for k in keys) + " |" for c in cells]
    return "\n".join(lines)


def plot_curves(out_dir: Path, names: list[str]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    dbs = {name: out_dir / name / "metrics.db" for name in names}
    metric = next((m for m in ("val_accuracy", "val_r2") if any(read_series(db, m) for db in dbs.values() if db.is_file())), None)
    panels = [("train_loss", "training loss"), ("val_loss", "validation loss")] + ([(metric, metric.replace("_", " "))] if metric else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for name, db in dbs.items():
        if not db.is_file():
            continue
        for ax, (key, _) in zip(axes, panels):
            series = read_series(db, key)
            if series:
                ax.plot(*zip(*series), label=name)
    for ax, (key, title) in zip(axes, panels):
        ax.set_xlabel("step")
        ax.set_title(title)
        if key != metric:
            ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "comparison.png", dpi=120)
    plt.close(fig)
    return True
