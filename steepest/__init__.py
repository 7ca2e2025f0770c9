"""steepest: train PyTorch models well and fast.

    steepest.fit(model, train_data, val_data, ...)   # your model and data (arrays, a Dataset or a DataLoader)
    steepest.train("digits_mlp", ["optimizer.lr=1e-3"])   # a recipe, as `steepest train` runs it
    steepest.load_recipe("my_recipe.yaml")           # a validated Recipe

`steepest.__version__` is the installed version; the command line is `steepest` (steepest.cli).
The API loads on first use (`steepest.lazy`), so `import steepest` stays light.
"""

from importlib.metadata import PackageNotFoundError, version

from steepest.lazy import lazy_exports

__all__ = ["FitResult", "__version__", "fit", "load_recipe", "train"]
__getattr__ = lazy_exports(__name__, {name: "steepest.api" for name in ("FitResult", "fit", "load_recipe", "train")})


def __dir__() -> list[str]:  # the lazy names too (tab completion, dir())
    return sorted({*globals(), *__all__})

try:
    __version__ = version("steepest")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
