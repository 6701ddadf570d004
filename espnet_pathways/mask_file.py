"""The pathway mask *file format*: versioned, checksummed, written atomically.

Kept apart from the mask container (:class:`espnet_pathways.masks.PathwayMasks`) so that
everything that reads or writes mask bits on disk (``PathwayMasks.save/.load`` and the
compact model storage of :mod:`espnet_pathways.packing`) shares one definition of the
format, of the checksum and of the bit packing, through this public API.

A file is ``torch.save`` of a dict (readable with ``torch.load(weights_only=True)``)::

    {"format": "espnet_pathways.masks", "version": 1, "languages": [...],
     "meta": {...JSON types...}, "shapes": {name: [dims]},
     "masks": {lang: {name: bool tensor}}, "checksum": sha256 hex}

The checksum covers languages, parameter names, shapes and mask bits (not ``meta``), so a
mask file that was edited, truncated or made for another model is refused on load.
Version 1 is the only version ever written; files of earlier commits load unchanged.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence, Tuple, Type, Union

import numpy as np
import torch
from torch import Tensor

from espnet_pathways.fileio import atomic_torch_save

__all__ = [
    "FORMAT",
    "VERSION",
    "MaskFileError",
    "check_format",
    "jsonable",
    "load_mask_file",
    "mask_checksum",
    "pack_bits",
    "save_mask_file",
    "unpack_bits",
]

FORMAT = "espnet_pathways.masks"
VERSION = 1

PathLike = Union[str, Path]
LanguageMasks = Mapping[str, Mapping[str, Tensor]]


class MaskFileError(ValueError):
    """A mask file is not ours, has an unknown version, or fails its checksum."""


def pack_bits(mask: Tensor) -> Tensor:
    """A bool mask as ``ceil(numel / 8)`` uint8 bytes (``np.packbits``, big-endian).

    8x smaller than a bool tensor: how the compact model storage keeps the masks of a
    100M-weight model.  The shape is not stored; keep it beside the bytes for
    :func:`unpack_bits`.
    """
    flat = mask.detach().reshape(-1).cpu().numpy().astype(bool, copy=False)
    return torch.from_numpy(np.packbits(flat))


def unpack_bits(packed: Tensor, shape: Union[Sequence[int], torch.Size]) -> Tensor:
    """Inverse of :func:`pack_bits`: uint8 bytes + shape -> bool tensor of ``shape``.

    The byte count must be exactly the one :func:`pack_bits` writes for ``shape``: any
    other count means the bytes belong to another tensor.
    """
    numel = math.prod(shape)
    if packed.dtype != torch.uint8 or packed.numel() != (numel + 7) // 8:
        raise ValueError(
            f"packed mask has {packed.numel()} {packed.dtype} values, expected "
            f"{(numel + 7) // 8} uint8 for shape {tuple(shape)}"
        )
    bits = np.unpackbits(packed.detach().reshape(-1).cpu().numpy(), count=numel)
    return torch.from_numpy(bits.astype(bool)).reshape(tuple(shape)).to(packed.device)


def mask_checksum(masks: LanguageMasks) -> str:
    """sha256 over the canonical content: sorted languages and names, shapes, mask bits."""
    h = hashlib.sha256()
    for lang in sorted(masks):
        h.update(b"lang\0" + lang.encode("utf-8") + b"\0")
        for name in sorted(masks[lang]):
            m = masks[lang][name]
            h.update(b"param\0" + name.encode("utf-8") + b"\0")
            h.update(json.dumps(list(m.shape)).encode("ascii") + b"\0")
            h.update(pack_bits(m).numpy().tobytes())
    return h.hexdigest()


def jsonable(meta: Mapping[str, Any]) -> Dict[str, Any]:
    """Copy of ``meta`` made of JSON types, so that files load with ``weights_only=True``."""
    return json.loads(json.dumps(dict(meta), default=str))


def check_format(
    payload: Any, fmt: str, version: int, where: str, error: Type[Exception] = MaskFileError
) -> None:
    """Raise ``error`` naming ``where`` unless ``payload`` is a dict of format ``fmt`` at
    ``version``: the first check of every versioned file this plugin reads."""
    if not isinstance(payload, Mapping) or payload.get("format") != fmt:
        found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
        raise error(f"{where}: not an {fmt} file (format={found!r})")
    if payload.get("version") != version:
        raise error(
            f"{where}: unsupported {fmt} version {payload.get('version')!r} "
            f"(this code reads version {version})"
        )


def save_mask_file(path: PathLike, masks: LanguageMasks, meta: Mapping[str, Any]) -> None:
    """Write ``masks`` (``{lang: {name: bool tensor}}``) and ``meta`` to ``path``.

    Written under a temporary name and moved into place when complete, so an interrupted
    save leaves any earlier file intact.  Values of ``meta`` that are not JSON types are
    stored as ``str``.
    """
    cpu = {lang: {n: m.detach().cpu() for n, m in mask.items()} for lang, mask in masks.items()}
    first = next(iter(cpu.values()), {})
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "languages": list(cpu),
        "meta": jsonable(meta),
        "shapes": {n: list(m.shape) for n, m in first.items()},
        "masks": cpu,
        "checksum": mask_checksum(cpu),
    }
    atomic_torch_save(payload, path)  # same masks, same bytes (the recipe's rerun check)


def load_mask_file(path: PathLike) -> Tuple[Dict[str, Dict[str, Tensor]], Dict[str, Any]]:
    """Read a file written by :func:`save_mask_file`: ``(masks, meta)``.

    Refuses (:class:`MaskFileError`, naming the file) anything edited, truncated, foreign
    or of another version; a missing file is ``FileNotFoundError``.
    """
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated / not a torch file / unsafe pickle
        raise MaskFileError(f"{path}: cannot read mask file ({type(e).__name__}: {e})") from e
    check_format(payload, FORMAT, VERSION, str(path))
    absent = [k for k in ("languages", "meta", "shapes", "masks", "checksum") if k not in payload]
    if absent:
        raise MaskFileError(f"{path}: mask file lacks the entries {absent}")
    masks = payload["masks"]
    if list(masks) != list(payload["languages"]):
        raise MaskFileError(f"{path}: language list does not match the stored masks")
    for lang, mask in masks.items():
        for name, m in mask.items():
            if list(m.shape) != list(payload["shapes"].get(name, [])):
                raise MaskFileError(f"{path}: mask {lang}/{name} does not match its recorded shape")
    checksum = mask_checksum(masks)
    if checksum != payload["checksum"]:
        raise MaskFileError(
            f"{path}: checksum mismatch (stored {payload['checksum'][:12]}..., "
            f"content {checksum[:12]}...): the mask file is corrupted or was edited"
        )
    return masks, dict(payload["meta"])
