"""The exceptions threadline raises, in one place so callers can catch by family."""

from __future__ import annotations


class ThreadlineError(Exception):
    """Base class of every error raised by threadline."""


class ConfigurationError(ThreadlineError):
    """Something in the configuration or the call is wrong; fix the code or settings."""


class DatabaseUnavailable(ThreadlineError):
    """The PostgreSQL server could not be reached."""


class SchemaError(ThreadlineError):
    """The database schema does not match what this version of threadline expects."""


class PayloadTooLarge(ThreadlineError):
    """A workflow input, step result, message or event exceeds the size limit."""


class NotSerializable(ThreadlineError):
    """A value that must be stored as JSON cannot be."""


class UnknownWorkflow(ThreadlineError):
    """No workflow with this name is registered."""


class UnknownRun(ThreadlineError):
    """No run with this id exists."""


class NonDeterminismError(ThreadlineError):
    """The workflow code no longer matches its journal (a step changed name or order)."""


class StepError(ThreadlineError):
    """A step failed after all its attempts; replays raise the same error from the journal."""

    def __init__(self, step: str, error_type: str, message: str) -> None:
        super().__init__(f"step {step!r} failed: {error_type}: {message}")
        self.step = step
        self.error_type = error_type
        self.message = message


class WorkflowFailed(ThreadlineError):
    """The run ended with an error; `error_type` and `message` say which."""

    def __init__(self, run_id: str, error_type: str, message: str) -> None:
        super().__init__(f"run {run_id!r} failed: {error_type}: {message}")
        self.run_id = run_id
        self.error_type = error_type
        self.message = message


class WorkflowCancelled(ThreadlineError):
    """The run was cancelled before it finished."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} was cancelled")
        self.run_id = run_id
