"""The errors pycmlt raises for things a user did or must act on (besides ValueError / TypeError for
bad options and OSError for files): the CLI prints them as `error: ...` without a traceback. Kept
free of imports so that every module (and the CLI) can use them cheaply."""
from __future__ import annotations


class TrainingError(RuntimeError):
    """A run that cannot start or cannot go on, for a reason the message explains."""


class RunLockedError(TrainingError):
    """The run folder is in use by another live run (it holds the folder's lock)."""


class TrainingDivergedError(TrainingError):
    """The loss, a gradient or a parameter became NaN or infinite; the last good checkpoint is kept."""


class ConfigMismatchError(ValueError):
    """--resume with a config that differs from the one the run folder was started with."""
