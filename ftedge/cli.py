"""The ``ftedge`` console script: argparse subcommands, each calling one library function.

Every subcommand module exposes ``add_parser(subparsers)`` and ``run(args) -> int`` and imports
nothing heavy at module level, so ``ftedge --help`` stays fast. A user error (FtedgeError) is
one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import warnings
from collections.abc import Sequence

from ftedge import __version__
from ftedge.errors import FtedgeError, Terminated, request_termination

SUBCOMMANDS = {
    "train": "ftedge.training.cli",
    "export": "ftedge.export.cli",
    "benchmark": "ftedge.runtime.cli_benchmark",
    "predict": "ftedge.runtime.cli_predict",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's default exits 2 with a usage block; we promise one line and exit code 1.
        sys.stderr.write(f"ftedge: error: {message}\n")
        raise SystemExit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ftedge",
        description="Fine-tune an image classifier, export it verified, benchmark and run it.",
    )
    parser.add_argument("--version", action="version", version=f"ftedge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in SUBCOMMANDS.values():
        try:
            mod = importlib.import_module(module)
        except ImportError:  # a subcommand whose module is not part of this install
            continue
        mod.add_parser(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
    return f"warning: {message}\n"


def _raise_terminated(signum: int, frame: object) -> None:
    request_termination()


def _install_sigterm() -> None:
    # Only the main thread may set handlers, and only a handler still at its default is
    # replaced (an embedding application keeps its own).
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        pass


def _one_line(e: BaseException) -> str:
    """An OSError the checks did not foresee, as the OS says it, with the path."""
    if isinstance(e, OSError) and e.strerror:
        where = f": {e.filename}" if e.filename is not None else ""
        return f"{e.strerror}{where}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    warnings.formatwarning = _one_line_warning
    _install_sigterm()
    mod = importlib.import_module(SUBCOMMANDS[args.command])
    try:
        return int(mod.run(args) or 0)
    except FtedgeError as e:
        sys.stderr.write(f"ftedge {args.command}: error: {e}\n")
        return 1
    except OSError as e:  # a path of the wrong kind, a full disk, a permission: one line
        sys.stderr.write(f"ftedge {args.command}: error: {_one_line(e)}\n")
        return 1
    except Terminated:
        sys.stderr.write("ftedge: terminated\n")
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        sys.stderr.write("ftedge: interrupted\n")
        return 130
    except Exception as e:
        # The last resort keeps the promise of one line; FTEDGE_DEBUG=1 shows the traceback.
        if os.environ.get("FTEDGE_DEBUG"):
            raise
        sys.stderr.write(
            f"ftedge {args.command}: internal error: {type(e).__name__}: {_one_line(e)} "
            "(FTEDGE_DEBUG=1 shows where)\n"
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
