"""Exceptions that the CLI turns into one clear line and an exit code.

`UserError` (and its subclasses) mean the user can fix it: bad usage, a bad
option value, a bad file. The CLI exits with 2. Anything else is an internal
failure and exits with 1.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names what to fix."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A configuration key or value is wrong."""


class DataError(UserError):
    """An input file or data set is missing, unreadable or malformed."""


class RunDirError(UserError):
    """A run directory is missing, incomplete, corrupt or not writable."""


class ModelPathError(UserError):
    """A `--model` path is neither a run directory nor a SavedModel export."""
