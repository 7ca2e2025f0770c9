"""steepest: train PyTorch models well and fast.

`steepest.__version__` is the installed version; the command line is `steepest` (steepest.cli).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("steepest")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
