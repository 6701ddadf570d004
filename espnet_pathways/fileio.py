"""Writing outputs so that nothing already produced is lost, and reading Kaldi files.

Every tool of the plugin writes through these helpers:

* :func:`atomic_output` / :func:`atomic_write_text`: the output is written under a
  temporary name in the same directory and moved into place (``os.replace``) only when it
  is complete, so a run that stops half-way leaves any earlier complete output as it was
  and readers never see a half-written file.
* :func:`exclusive_lock`: an advisory ``flock`` on ``<dir>/.lock`` so that two runs
  writing the same output directory are refused instead of silently merged.
* :func:`read_two_columns`: ESPnet's own Kaldi two-column reader
  (``espnet2.fileio.read_text.read_2columns_text``), with errors that name the file.
* :func:`read_yaml_mapping`: a YAML config that must be a mapping, with one-line errors
  that name the file (PyYAML's own messages span several lines).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, Union

PathLike = Union[str, Path]

__all__ = [
    "OutputLockedError",
    "atomic_output",
    "atomic_write_text",
    "atomic_torch_save",
    "exclusive_lock",
    "read_two_columns",
    "read_yaml_mapping",
]


class OutputLockedError(RuntimeError):
    """Another process holds the lock of an output directory."""


@contextlib.contextmanager
def atomic_output(path: PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` on success.

    On an exception (or ``KeyboardInterrupt``) the temporary file is removed and
    ``path`` keeps whatever it held before.  ``suffix`` ends the temporary name, for
    writers that choose a format by it (ESPnet's packer needs ``.zip``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_torch_save(obj: Any, path: PathLike, suffix: str = ".tmp") -> None:
    """``torch.save(obj, path)`` through :func:`atomic_output`, with the same bytes for the
    same object whatever the temporary name.

    ``torch.save`` to a file name stores its records under that name's stem, so saving to
    a random temporary name gave a different file every time; the recipe's rerun check
    hashes the files a training starts from (masks, checkpoints), and an unchanged mask set
    rewritten by a rerun looked new and retrained every pathway system.  Saved to a buffer,
    the records are named ``archive/`` whatever the path.
    """
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_output(path, suffix=suffix) as tmp:
        tmp.write_bytes(buffer.getvalue())


@contextlib.contextmanager
def exclusive_lock(directory: PathLike, what: str = "this output directory") -> Iterator[Path]:
    """Hold an exclusive, non-blocking ``flock`` on ``<directory>/.lock``.

    A second holder gets :class:`OutputLockedError` at once, naming the directory.  The
    lock is released when the process ends, however it ends (a stale ``.lock`` file left
    behind by ``kill -9`` is harmless: ``flock`` locks die with their process).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputLockedError(
                    f"{directory}: another run is writing {what} (lock {lock_path}); "
                    "wait for it or choose another output directory"
                ) from None
            raise
        yield lock_path
    finally:
        os.close(fd)


def read_two_columns(path: PathLike, require_value: bool = False) -> Dict[str, str]:
    """A Kaldi two-column file (``key value...``) as a dict, via ESPnet's reader.

    Errors name the file: a missing file is ``FileNotFoundError`` with the path, a
    duplicated key, a file that is not UTF-8 text or (with ``require_value``) a line of
    one column is ``ValueError`` with the path.  ESPnet reads a line of one column as
    an empty value, which is right for ``text`` (an empty transcript) but a damaged line
    in a map such as ``utt2spk``: its readers ask for ``require_value``.
    """
    from espnet2.fileio.read_text import read_2columns_text

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        data = dict(read_2columns_text(path))
    except RuntimeError as e:  # ESPnet raises RuntimeError for duplicated keys
        raise ValueError(f"{path}: {e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if require_value:
        for key, value in data.items():
            if not value.strip():
                raise ValueError(f"{path}: the line of {key!r} has one column "
                                 "(expected 'key value')")
    return data


def read_yaml_mapping(path: PathLike, what: str = "YAML file") -> Dict[str, Any]:
    """A YAML file whose top level is a mapping (a config, an info file).

    Every fault is one line naming the file: a missing file ``FileNotFoundError``
    ("<path>: <what> not found"); text that is not YAML, or YAML that is not a non-empty
    mapping, ``ValueError`` (with the line of a syntax error).  PyYAML's own exception is
    neither an input error for :mod:`espnet_pathways.bin._cli` nor one line.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ValueError(f"{path}: not valid YAML{where} ({problem})") from None
    if not isinstance(data, dict) or not data:
        got = ("an empty file" if data is None else "an empty mapping" if data == {}
               else f"a {type(data).__name__}")
        raise ValueError(f"{path}: not a YAML mapping of options (got {got}); expected a {what}")
    return data
