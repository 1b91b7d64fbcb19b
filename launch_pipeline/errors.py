"""Errors a user can meet. Each message says what is wrong and what to do about it."""

from __future__ import annotations


class LaunchPipelineError(Exception):
    """Base class of the errors this project raises on purpose."""


class InputFileError(LaunchPipelineError):
    """A raw input file cannot be used at all (file-level problem): the run stops at once.

    Row-level problems never raise: they are quarantined with a reason.
    """

    def __init__(self, path, problem: str, fix: str):
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}. What to do: {fix}")


class ConfigurationError(LaunchPipelineError):
    """A setting is invalid (unknown source, path outside the data directory, bad identifier)."""


class AccountingError(LaunchPipelineError):
    """Rows were lost or counted twice between two stages (source file -> raw partition ->
    clean + quarantined): the step stops with the file, the partition and the cause, before
    anything is committed."""

    def __init__(self, path, partition, cause: str, fix: str | None = None):
        self.path = str(path)
        self.partition = str(partition)
        self.problem = f"partition {partition}: {cause}"
        self.fix = fix or (
            "nothing was written for this partition; this is a defect of the pipeline, not of "
            "your data: report it with this message"
        )
        super().__init__(f"{self.path}: {self.problem}. What to do: {self.fix}")


class NotEnoughDataError(LaunchPipelineError):
    """The input is valid but too small or too narrow for a step (one user, one day, ...): the
    message says what is missing and how much is needed."""
