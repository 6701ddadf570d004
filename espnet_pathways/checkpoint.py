"""Reading model checkpoints with errors that name the file.

``torch.load`` on a truncated or foreign file fails deep inside its zip reader
("PytorchStreamReader failed reading zip archive") without saying which file; every tool
that reads a checkpoint given on its command line goes through :func:`load_state_dict`
so that the message names it and says what to do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

PathLike = Union[str, Path]


class CheckpointError(ValueError):
    """A model checkpoint that cannot be read (missing, truncated, not PyTorch)."""


def load_state_dict(path: PathLike, what: str = "model checkpoint") -> Dict[str, Any]:
    """The state dict saved in ``path`` (on the CPU; ESPnet's ``{"module": ...}`` wrapper
    of a ``checkpoint.pth`` unwrapped), or :class:`CheckpointError` naming the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, EOFError, pickle errors
        raise CheckpointError(
            f"{path}: cannot read the {what} ({describe_load_error(e)}); the file is "
            "truncated or not a PyTorch checkpoint: copy or train it again"
        ) from e
    if isinstance(state, dict) and "module" in state and isinstance(state["module"], dict):
        state = state["module"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the {what} holds a {type(state).__name__}, "
                              "not a state dict")
    return state


def describe_load_error(e: BaseException) -> str:
    """The first line of torch's message (its zip-reader errors run over many lines)."""
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__
