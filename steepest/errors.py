"""Errors a user can fix. The CLI turns each into one line on stderr and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SteepestError(Exception):
    """Base class: a problem with the user's input (recipe, data, checkpoint, command line)."""

    exit_code = 2


class ConfigError(SteepestError):
    """An invalid recipe, override or component argument."""


class DataError(SteepestError):
    """Data that cannot be trained on: bad labels, NaN/inf features, ragged rows, missing files."""


class CheckpointError(SteepestError):
    """A checkpoint that is missing, corrupt, truncated or from an incompatible run."""


class TrainingError(SteepestError):
    """A run that cannot continue (for example: the loss stayed non-finite)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" did you mean '{close[0]}'?" if close else ""


def unknown_choice(key: str, value: str, choices: Iterable[str], what: str = "name") -> ConfigError:
    """A ConfigError for an unknown choice that names the key, suggests and lists the valid ones."""
    choices = sorted(choices)
    return ConfigError(
        f"{key}: unknown {what} '{value}';{did_you_mean(value, choices)} valid: {', '.join(choices)}"
    )
