"""Exceptions with a one-line message meant for the user."""


class VSILError(Exception):
    """Base class of vsil's errors."""


class UsageError(VSILError):
    """Bad arguments or unreadable input: the whole run cannot start (CLI exit status 2)."""


class MissingDependencyError(VSILError, ImportError):
    """An optional backend's package is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'vsil[{extra}]'")
