"""Encoder choices of the pathway transducer: ESPnet's Conformer ``Encoder`` or Emformer.

``build_encoder(encoder_type, input_size, encoder_conf)`` is what
``ASRPathwaysTask.build_model`` calls with ``--encoder`` and ``--encoder_conf``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from espnet2.asr_transducer.encoder.encoder import Encoder

from espnet_pathways.encoders.emformer import EmformerEncoder, StackingSubsampling

#: Values of ``--encoder``; the first is the default.
ENCODER_CHOICES = ("conformer", "emformer")


def build_encoder(
    encoder_type: Optional[str], input_size: int, encoder_conf: Optional[Dict[str, Any]] = None
) -> Encoder:
    """Build the transducer encoder.

    Args:
        encoder_type: ``conformer`` (ESPnet's ``Encoder``: ``body_conf``, ``input_conf``,
            ``main_conf``) or ``emformer`` (:class:`EmformerEncoder`'s keyword arguments);
            ``None`` means ``conformer``.
        input_size: feature dimension.
        encoder_conf: the encoder's keyword arguments (``--encoder_conf``).

    Both are instances of ESPnet's ``Encoder`` (the type ``ESPnetASRTransducerModel``
    checks).
    """
    conf = dict(encoder_conf or {})
    kind = (encoder_type or "conformer").lower()
    if kind == "conformer":
        return Encoder(input_size, **conf)
    if kind == "emformer":
        return EmformerEncoder(input_size, **conf)
    raise ValueError(f"unknown encoder {encoder_type!r}; choose one of {', '.join(ENCODER_CHOICES)}")


__all__ = ["ENCODER_CHOICES", "EmformerEncoder", "StackingSubsampling", "build_encoder"]
