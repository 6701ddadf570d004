"""Choosing a training option on the development set: the run with the lowest dev loss.

Why: the paper tunes the per-language pruning interval on dev, and a choice made on the
test set would flatter every system.  The recipe trains one run per candidate value and
keeps the one whose validation loss (ESPnet's ``[valid] loss``, computed on the dev set
every epoch) is lowest.  A pruning run is judged at its last epoch (the model at its
final masks, the one decoded); other runs at their best epoch (the one decoded).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple, Union

PathLike = Union[str, Path]

__all__ = ["dev_loss", "select_on_dev"]


def dev_loss(exp_dir: PathLike, epoch: str = "last") -> float:
    """The dev loss of a finished ESPnet run, read from its ``checkpoint.pth`` reporter.

    ``epoch``: ``last`` (the final epoch) or ``best`` (the lowest over the epochs).
    """
    import torch
    from espnet2.train.reporter import Reporter

    path = Path(exp_dir) / "checkpoint.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint (was {exp_dir} trained?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["reporter"]
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path}: not an ESPnet checkpoint with a reporter ({e})") from None
    reporter = Reporter()
    reporter.load_state_dict(state)
    if not reporter.has("valid", "loss"):
        raise ValueError(f"{path}: no validation loss recorded")
    if epoch == "best":
        return float(reporter.sort_values("valid", "loss", "min")[0])
    if epoch != "last":
        raise ValueError(f"epoch must be 'last' or 'best', got {epoch!r}")
    return float(reporter.get_value("valid", "loss", reporter.get_epoch()))


def select_on_dev(exp_dirs: Sequence[PathLike], epoch: str = "last") -> Tuple[Path, List[Tuple[Path, float]]]:
    """The run with the lowest dev loss (the first one on a tie) and every run's loss."""
    if not exp_dirs:
        raise ValueError("no candidate runs to choose from")
    losses = [(Path(d), dev_loss(d, epoch)) for d in exp_dirs]
    best = min(losses, key=lambda x: x[1])[0]
    return best, losses
