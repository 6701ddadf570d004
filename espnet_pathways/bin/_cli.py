"""What every ``espnet_pathways.bin`` tool does around its ``main()``.

ESPnet's log format, and a failure reported as one clear line naming what is wrong
(exit status 1) instead of a traceback: the messages are written to name the file,
utterance or language at fault.  ``--verbose`` (accepted by every tool, anywhere on its
command line) adds the traceback, for bug reports.

Also what several tools share on their command line: :func:`add_model_arguments` (the
model a tool reads, with ESPnet's option names) and :func:`log_input_errors` (the
reporting tools' "what was not done: why" error line).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import traceback
from dataclasses import dataclass
from typing import Callable, Iterator, List, Mapping, Optional, Sequence, Tuple, Type

from espnet_pathways.fileio import OutputLockedError

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
#: Errors that are the input's fault: their message is the whole story.
INPUT_ERRORS: Tuple[Type[BaseException], ...] = (ValueError, KeyError, OSError,
                                                 OutputLockedError)
VERBOSE_FLAG = "--verbose"


def setup_logging(level: str | int) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)


def error_line(e: BaseException, expected: Tuple[Type[BaseException], ...] = ()) -> str:
    """The one line printed for ``e``: its message (``KeyError`` without the quotes
    ``str()`` adds); an unexpected type also names itself, since it may be a bug."""
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    msg = msg.strip()
    if not isinstance(e, INPUT_ERRORS + tuple(expected)):
        msg = f"{type(e).__name__}: {msg}"
    return msg


def program_name(main: Callable[..., object]) -> str:
    """``recognize`` for ``espnet_pathways.bin.recognize.main``, also under ``python -m``
    (where the module is ``__main__``)."""
    module = getattr(main, "__module__", None) or "main"
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec is not None else sys.argv[0]
    return module.rsplit(".", 1)[-1].removesuffix(".py")


def run(
    main: Callable[..., object],
    argv: Optional[Sequence[str]] = None,
    exit_codes: Optional[Mapping[Type[BaseException], int]] = None,
) -> object:
    """Call ``main(argv)``; any error becomes one line on stderr and a non-zero exit.

    ``argv`` defaults to ``sys.argv[1:]``; ``--verbose`` is taken out of it and makes the
    traceback appear too.  ``exit_codes`` maps an exception type to its exit status
    (default 1).  ``KeyboardInterrupt`` exits 130 without a traceback; ``SystemExit``
    (argparse's usage errors) passes through.
    """
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    verbose = VERBOSE_FLAG in args
    args = [a for a in args if a != VERBOSE_FLAG]
    prog = program_name(main)
    try:
        return main(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the one place errors become an exit status
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {error_line(e, tuple(exit_codes or ()))}", file=sys.stderr)
        code = 1
        for kind, c in (exit_codes or {}).items():
            if isinstance(e, kind):
                code = c
                break
        sys.exit(code)


def add_model_arguments(p: argparse.ArgumentParser, masks_help: Optional[str] = None) -> None:
    """``--asr_train_config`` and ``--asr_model_file`` (ESPnet's names for the model a tool
    reads) and, with ``masks_help``, ``--pathway_masks`` (none: the config's)."""
    from espnet2.utils.types import str_or_none

    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True)
    if masks_help is not None:
        p.add_argument("--pathway_masks", type=str_or_none, default=None, help=masks_help)


def add_reporting_arguments(p: argparse.ArgumentParser) -> None:
    """``--log_level`` and ``--verbose`` of the reporting tools (score, make_results,
    make_plots), whose ``main()`` returns an exit status (see :func:`log_input_errors`)."""
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--verbose", action="store_true", help="a traceback on errors")


def parse_reporting_args(parser: argparse.ArgumentParser,
                         argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The arguments of a reporting tool (:func:`add_reporting_arguments`), logging set up."""
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    return args


#: What the reporting tools (score, make_results, make_plots) report as bad input.
REPORTED_ERRORS: Tuple[Type[BaseException], ...] = (ValueError, OSError, RuntimeError)


@dataclass
class Outcome:
    """Whether the block of :func:`log_input_errors` failed (its error was logged)."""

    failed: bool = False


@contextlib.contextmanager
def log_input_errors(logger: logging.Logger, what: str, verbose: bool) -> Iterator[Outcome]:
    """Turn a :data:`REPORTED_ERRORS` raised in the block into one logged line
    ``<what>: <message>`` and ``outcome.failed``; the caller returns exit status 1.

    Why not :func:`run`: these tools' ``main()`` returns the exit status to its callers
    (the recipe and tests call it in-process) and their message says what was not
    written.  ``verbose`` re-raises instead, for the traceback.
    """
    outcome = Outcome()
    try:
        yield outcome
    except REPORTED_ERRORS as e:
        if verbose:
            raise
        logger.error("%s: %s", what, e)
        outcome.failed = True
