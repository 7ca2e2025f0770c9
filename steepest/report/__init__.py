"""`steepest report RUN_DIR [RUN_DIR ...]`: one self-contained HTML page per run (learning
curves, scheduled hyperparameters, gradient norms and update ratios, throughput, the test split's
confusion matrix or residuals and its most confidently wrong samples, training samples after
augmentation, doctor / sharpness / batch-size results, the recipe), or several runs overlaid with
the diff of their recipes. Viewable offline: no script, no request, images embedded.

    >>> write_report(["runs/exp1"])                    # doctest: +SKIP
    PosixPath('runs/exp1/report.html')
    >>> write_report(["runs/a", "runs/b"], "ab.html")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from steepest.errors import SteepestError
from steepest.report.page import compare_sections, page, run_sections
from steepest.report.predictions import test_view
from steepest.report.run_files import read_run
from steepest.run.directory import refuse_output
from steepest.run.listing import recipe_diff
from steepest.training.checkpoint import atomic_write_bytes

__all__ = ["write_report"]


def write_report(run_dirs: list[str | Path], out: str | Path | None = None, *, trust_code: bool = False) -> Path:
    """Write the report of one run (default file: RUN_DIR/report.html) or of several runs overlaid
    (default: report.html in the current folder); returns the file. The test-split sections
    rebuild the model and the data from the run's recipe; when that is not possible (data missing,
    an untrusted component) they say why and the rest of the report is written. `out` may not be
    a folder or one of the runs' own files (config.yaml, metrics.db, a checkpoint, ...) other than
    their report.html; its folder is made when missing. The file is written atomically."""
    if out is not None:  # before the work; a run's own report.html may be rewritten: it is what this writes
        refuse_output(run_dirs, out, "-o", "report.html", allow=("report.html",))
    runs = [read_run(d) for d in run_dirs]
    if not runs:
        raise SteepestError("steepest report needs at least one run directory")
    if len(runs) == 1:
        run = runs[0]
        view, error = None, None
        if (run.path / "model.safetensors").exists():
            try:
                view = test_view(run.path, trust_code=trust_code)
            except SteepestError as exc:
                error = str(exc)
        text = page(f"steepest report: {run.name}", run_sections(run, view, error))
        path = Path(out) if out else run.path / "report.html"
    else:
        diff = _diff_all([r.path for r in runs])
        text = page(f"steepest report: {len(runs)} runs", compare_sections(runs, diff))
        path = Path(out) if out else Path("report.html")
    target = path.resolve() if path.is_symlink() else path  # through a symlink, as `predict -o` writes
    try:
        atomic_write_bytes(target, text.encode())
    except OSError as exc:
        raise SteepestError(f"cannot write the report {path}: {exc.strerror or exc}; free space, fix the permissions "
                            "or choose another file with -o") from None
    return path


def _diff_all(paths: list[Path]) -> list[tuple]:
    """(key, value in each run) for every key where any run differs from the first."""
    keys: dict[str, list] = {}
    for i, other in enumerate(paths[1:], start=1):
        for key, first, value in recipe_diff(paths[0], other):
            keys.setdefault(key, [first] + [None] * (len(paths) - 1))[i] = value
    for values in keys.values():  # fill the runs that agree with the first
        for i in range(1, len(paths)):
            if values[i] is None:
                values[i] = values[0]
    return [(k, *v) for k, v in sorted(keys.items())]
