"""User-facing errors: the CLI prints them as one line on stderr and exits with code 1."""


class FtedgeError(Exception):
    """A problem with the user's input or environment, explained in one line (no traceback)."""


class MissingExtraError(FtedgeError):
    """An optional backend is not installed; the message names the pip extra that provides it."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} is not installed: pip install 'ftedge[{extra}]'")
