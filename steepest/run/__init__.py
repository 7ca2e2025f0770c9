"""A run from a recipe: assembled once (`build_run`), trained (`train`), continued (`resume`),
finished (`finish`), in a run directory (`steepest.run.directory`)."""

from steepest.run.build import Run, build_run
from steepest.run.finish import finish
from steepest.run.pipeline import train
from steepest.run.resume import resume

__all__ = ["Run", "build_run", "finish", "resume", "train"]
