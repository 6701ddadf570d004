"""Training compute of one run: optimizer steps and utterances, per language.

Why: every system after the dense model adds training to it, so a comparison means
something only if each system's extra steps are known (issue 10).  Each training run
writes ``<exp dir>/compute.json`` at its end (rank 0)::

    {"steps": 960, "steps_per_lang": {"en": 400, ...}, "utts_per_lang": {"en": 5120, ...},
     "epochs": 4}

counting only this run's optimizer steps (a resumed run continues the counts stored in
its checkpoint).  ``steps_per_lang[l]``: steps whose batch -- on any rank, under DDP --
held an utterance of ``l``; ``utts_per_lang[l]``: utterances of ``l`` that reached an
update, summed over the ranks.  ``pathways.sh`` lists, per system, the runs whose
compute counts toward it in ``exp/asr_<system>/compute_sources``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Union

from espnet_pathways.fileio import atomic_write_text

__all__ = ["ComputeCounter", "COMPUTE_FILE"]

#: Name of the file every training run writes into its exp dir.
COMPUTE_FILE = "compute.json"


@dataclass
class ComputeCounter:
    """Counts of one training run; ``pending`` holds this rank's utterances since the
    last optimizer step (they count only once that step is taken)."""

    languages: List[str]
    steps: int = 0
    epochs: int = 0
    steps_per_lang: Dict[str, int] = field(default_factory=dict)
    utts_per_lang: Dict[str, int] = field(default_factory=dict)
    pending: Dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for lang in self.languages:
            self.steps_per_lang.setdefault(lang, 0)
            self.utts_per_lang.setdefault(lang, 0)

    def see(self, lang_ids: Sequence[int]) -> None:
        """A training forward on utterances of these language ids (this rank)."""
        for i in lang_ids:
            lang = self.languages[int(i)]
            self.pending[lang] = self.pending.get(lang, 0) + 1

    def pending_vector(self) -> List[int]:
        """This rank's pending utterances in language order (what DDP all-reduces)."""
        return [self.pending.get(lang, 0) for lang in self.languages]

    def forget_pending(self) -> None:
        """The optimizer step these utterances were for was skipped (non-finite grads)."""
        self.pending.clear()

    def step_taken(self, utts: Sequence[int]) -> None:
        """One optimizer step on ``utts[i]`` utterances of language ``i`` (all ranks)."""
        self.steps += 1
        for lang, n in zip(self.languages, utts):
            if n > 0:
                self.steps_per_lang[lang] += 1
                self.utts_per_lang[lang] += int(n)
        self.pending.clear()

    def as_dict(self) -> dict:
        """The compute.json content (the contract with the reporting code)."""
        return {
            "steps": self.steps,
            "steps_per_lang": dict(self.steps_per_lang),
            "utts_per_lang": dict(self.utts_per_lang),
            "epochs": self.epochs,
        }

    def state_dict(self) -> dict:
        return self.as_dict()

    def load_state_dict(self, state: Mapping) -> None:
        self.steps = int(state["steps"])
        self.epochs = int(state["epochs"])
        self.steps_per_lang.update({k: int(v) for k, v in state["steps_per_lang"].items()})
        self.utts_per_lang.update({k: int(v) for k, v in state["utts_per_lang"].items()})
        self.pending.clear()

    def write(self, exp_dir: Union[str, Path]) -> Path:
        """Write ``<exp_dir>/compute.json`` atomically; returns its path."""
        path = Path(exp_dir) / COMPUTE_FILE
        atomic_write_text(path, json.dumps(self.as_dict(), indent=1, sort_keys=True) + "\n")
        return path
