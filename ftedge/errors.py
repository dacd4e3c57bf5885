"""User-facing errors: the CLI prints them as one line on stderr and exits with code 1."""


class FtedgeError(Exception):
    """A problem with the user's input or environment, explained in one line (no traceback)."""


class MissingExtraError(FtedgeError):
    """An optional backend is not installed; the message names the pip extra that provides it."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} is not installed: pip install 'ftedge[{extra}]'")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so it unwinds exactly as Ctrl-C does: every
    ``finally``/``except BaseException`` removes its temporary files and folders."""


_terminate_requested = [False]  # set by the CLI's SIGTERM handler


def request_termination() -> None:
    """Record a SIGTERM and raise ``Terminated`` (the CLI's signal handler)."""
    _terminate_requested[0] = True
    raise Terminated()


def raise_if_terminated() -> None:
    """Raise ``Terminated`` again if a SIGTERM arrived but its exception was swallowed.

    A signal lands wherever the process is, and library code that catches everything (an
    optional import under a bare ``except:``, say) swallows the exception: about one
    termination in ten early in ``ftedge export``, while libraries were importing, went
    unnoticed that way. Long commands call this between steps, so a terminated command still
    stops before it writes its result."""
    if _terminate_requested[0]:
        raise Terminated()
