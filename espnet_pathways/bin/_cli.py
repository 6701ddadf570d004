"""What every ``espnet_pathways.bin`` tool does around its ``main()``.

ESPnet's log format, and bad input reported as one clear line naming what is wrong
(exit status 1) instead of a traceback: the messages are written to name the file,
utterance or language at fault.
"""
from __future__ import annotations

import logging
import sys
from typing import Callable, Tuple, Type

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
INPUT_ERRORS: Tuple[Type[BaseException], ...] = (ValueError, KeyError, FileNotFoundError)


def setup_logging(level: str | int) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)


def run(main: Callable[[], object]) -> None:
    """Call ``main()``; an input error becomes an error line and exit status 1."""
    try:
        main()
    except INPUT_ERRORS as e:
        logging.error("%s", e)
        sys.exit(1)
