"""The default run directory's name (`steepest runs` lists runs: steepest.run.listing)."""

from __future__ import annotations

import time
from pathlib import Path


def default_run_dir(recipe_name: str, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{recipe_name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{recipe_name}-{stamp}-{n}"
    return path
