"""Does a stage config describe the dense model's architecture?

Every training after stage 5 (dense_ft, LSP, LAP, the pathway runs, an added language)
starts from the dense model's weights (``--init_param``), yet each stage has its own
YAML config that repeats the whole model description.  A config that differs from the
dense one in a layer size fails with a size-mismatch traceback half an hour into the run,
and one that differs in the features or an activation silently trains a different model.
:func:`architecture_differences` compares the keys that build the model, so the recipe
can refuse such a config before any training starts (``bin/check_configs``).

What must match (the options :class:`~espnet_pathways.tasks.asr_pathways.ASRPathwaysTask`,
i.e. ESPnet's ``ASRTransducerTask``, builds the model from; every key under them, at any
depth, except dropout rates):

* ``frontend``/``frontend_conf``, ``input_size``: the features and their dimension;
* ``normalize``/``normalize_conf``: the feature normalisation the weights were trained on
  (compared as written: the recipe gives ``--normalize global_mvn`` on the command line);
* ``encoder``/``encoder_conf``, ``decoder``/``decoder_conf``, ``joint_network_conf``:
  the layers, their sizes, activations, subsampling and the chunk/segment attention the
  dense model was trained with;
* ``token_list``, ``token_type``, ``bpemodel``, ``token_mode`` where a config sets them:
  the output vocabulary (the recipe passes them on the command line, the same to all);
* in ``model_conf``, only whether ``auxiliary_ctc_weight``, ``auxiliary_lm_loss_weight``
  and ``use_k2_pruned_loss`` are on: each adds output layers when it is non-zero, so zero
  against non-zero changes the parameters, while the weight itself is a loss weight.

What may differ: dropout rates (any key named ``*dropout*``: no parameter depends on them
and a fine-tuning or pruning run may well want other regularisation), the loss options
(``transducer_weight``, ``rnnt_loss_impl``, the auxiliary loss weights' values, ...),
augmentation (``specaug``/``specaug_conf``, the preprocessor's options), and all of the
training schedule: ``optim``/``scheduler`` and their confs, batch sizes, epochs and steps,
``init`` (replaced by ``--init_param``), the pruning and pathway options.

Keys are compared as the files write them; only the model-choice keys that the recipe's
configs often leave out fall back to the task's defaults (:data:`CHOICE_DEFAULTS`), so
``encoder: conformer`` matches a config without ``encoder``.  A key set in one file and
absent from the other is a difference: write it in both.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Union

import yaml

from espnet_pathways.fileio import read_yaml_mapping

__all__ = [
    "ARCHITECTURE_KEYS",
    "CHOICE_DEFAULTS",
    "LAYER_SWITCHES",
    "MISSING",
    "Difference",
    "architecture_differences",
    "load_config",
]

#: Top-level options compared in full (nested keys included, dropout rates excepted).
ARCHITECTURE_KEYS = (
    "frontend", "frontend_conf", "input_size", "normalize", "normalize_conf",
    "encoder", "encoder_conf", "decoder", "decoder_conf", "joint_network_conf",
    "token_list", "token_type", "bpemodel", "token_mode",
)
#: The task's defaults for the model choices (ESPnet's ``frontend_choices`` and
#: ``decoder_choices``, ASRPathwaysTask's ``--encoder``); tests check them against the
#: parser.  ``normalize`` has none here: the recipe sets it on the command line.
CHOICE_DEFAULTS: Dict[str, str] = {"frontend": "default", "encoder": "conformer",
                                   "decoder": "rnn"}
#: ``model_conf`` keys whose being on (non-zero) adds parameters, with what they add.
LAYER_SWITCHES: Dict[str, str] = {
    "auxiliary_ctc_weight": "the auxiliary CTC output layer",
    "auxiliary_lm_loss_weight": "the auxiliary LM output layer",
    "use_k2_pruned_loss": "the pruned-loss projections",
}

PathLike = Union[str, Path]


class _Missing:
    """The value of a key a config does not set."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Difference:
    """One architecture key on which a stage config and the dense config disagree.

    ``path`` is dotted (``encoder_conf.body_conf[0].hidden_size``); ``value`` is the stage
    config's, ``dense_value`` the dense config's (:data:`MISSING` where a file lacks it);
    ``note`` says why a key matters where that is not obvious from its name.
    """

    path: str
    value: Any
    dense_value: Any
    note: str = ""

    def describe(self, config: PathLike, dense_config: PathLike) -> str:
        """One line naming both files, the key and both values."""
        ours = "not set" if self.value is MISSING else show(self.value)
        theirs = ("does not set it" if self.dense_value is MISSING
                  else f"has {show(self.dense_value)}")
        note = f" ({self.note})" if self.note else ""
        return (f"{config}: {self.path} is {ours}, the dense config {dense_config} "
                f"{theirs}{note}; every stage after 5 starts from the dense model, so its "
                "architecture must match")


def show(value: Any, limit: int = 80) -> str:
    """A value as YAML writes it inline, cut to ``limit`` characters for one line."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False,
                          width=10**6).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_config(path: PathLike) -> Dict[str, Any]:
    """The options of an ESPnet YAML config (:func:`espnet_pathways.fileio.read_yaml_mapping`);
    a ``ValueError`` naming the file when it is missing, unreadable, not YAML or not a
    mapping of options."""
    try:
        return read_yaml_mapping(path, "config")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read the config ({e.strerror or type(e).__name__})") from None


def is_dropout(key: Any) -> bool:
    """Dropout rates may differ between stages: no parameter depends on them."""
    return isinstance(key, str) and "dropout" in key


def layer_on(value: Any) -> bool:
    """Whether a :data:`LAYER_SWITCHES` value adds its layers (ESPnet: ``weight > 0``)."""
    if value is MISSING or value is None:
        return False
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return bool(value)


def nested_differences(path: str, value: Any, dense: Any) -> Iterator[Difference]:
    """Differences between two option values, depth first in the dense config's order;
    dropout keys skipped."""
    if isinstance(value, dict) and isinstance(dense, dict):
        keys = list(dense) + [k for k in value if k not in dense]
        for k in keys:
            if is_dropout(k):
                continue
            yield from nested_differences(f"{path}.{k}", value.get(k, MISSING),
                                          dense.get(k, MISSING))
    elif isinstance(value, list) and isinstance(dense, list):
        for i in range(max(len(value), len(dense))):
            yield from nested_differences(f"{path}[{i}]",
                                          value[i] if i < len(value) else MISSING,
                                          dense[i] if i < len(dense) else MISSING)
    elif value is MISSING or dense is MISSING:
        if value is not dense:  # one of them set
            yield Difference(path, value, dense)
    elif (type(value) is bool) != (type(dense) is bool) or value != dense:  # true != 1
        yield Difference(path, value, dense)


def architecture_differences(config: Mapping[str, Any],
                             dense: Mapping[str, Any]) -> List[Difference]:
    """Every architecture key (see the module docstring) on which ``config``, a derived
    stage's options, differs from ``dense``, the dense model's; empty when they build the
    same model.  In the order of :data:`ARCHITECTURE_KEYS`, nested keys in the dense
    config's order, then the ``model_conf`` switches."""
    out: List[Difference] = []
    for key in ARCHITECTURE_KEYS:
        default = CHOICE_DEFAULTS.get(key, MISSING)
        out += nested_differences(key, config.get(key, default), dense.get(key, default))
    ours, theirs = config.get("model_conf"), dense.get("model_conf")
    ours = ours if isinstance(ours, dict) else {}  # a malformed one is ESPnet's to refuse
    theirs = theirs if isinstance(theirs, dict) else {}
    for key, what in LAYER_SWITCHES.items():
        value, dense_value = ours.get(key, MISSING), theirs.get(key, MISSING)
        if layer_on(value) != layer_on(dense_value):
            note = f"zero or not decides whether the model has {what}"
            out.append(Difference(f"model_conf.{key}", value, dense_value, note))
    return out
