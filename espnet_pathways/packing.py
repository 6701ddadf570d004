"""Compact storage and ESPnet-style packing of (pathway) transducer models.

Compact storage
    A pathway model only ever uses the weights inside the union of its pathways (pathway
    training zeroes everything else, ``trainer.py``).  :func:`compact_state_dict` stores,
    for each masked parameter, only the weights at the union's ``True`` positions (a 1-D
    tensor, in row-major order) plus the bit-packed union (:func:`mask_file.pack_bits`) and,
    per language, the bits of its mask *at the union positions* (a pathway is a subset of
    the union).  Every other entry of the state dict is kept as it is.
    :func:`expand_state_dict` rebuilds the dense state dict and the
    :class:`~espnet_pathways.masks.PathwayMasks` bit-exactly (even the sign of zeros
    outside the union, which ``W * 0`` leaves negative for negative weights, is kept, and
    the masks' checksum is verified).

Packing
    :func:`pack_model` writes an ESPnet model zip with ``espnet2.main_funcs.pack_funcs.
    pack`` (the function behind ``espnet2.bin.pack``), so that ``espnet_model_zoo``'s
    ``ModelDownloader.download_and_unpack("x.zip")`` unpacks it and rewrites the paths in
    the config.  Two layouts:

    * dense (default): ``asr_model_file`` = the dense state dict, the masks file as an
      extra file named by the config's ``pathway_masks``.  Loads with
      ``PathwaySpeech2Text.from_pretrained("x.zip", lang=...)`` as it is.
    * compact (``compact=True``): no ``asr_model_file``; the compact file is listed as
      ``pathway_compact_model`` in ``meta.yaml`` (so that ESPnet's plain ``Speech2Text``
      fails loudly on it instead of silently loading a partial state dict) and
      :func:`unpack_model` expands it, once, beside the unpacked files.

    A fusion LM (``pathways.sh --use_lm true``) goes in as ESPnet's ASR zips carry one
    (``lm_train_config`` / ``lm_file``), with the recipe's decoding config
    (``decode_config``): ESPnet's ``Speech2Text`` would fuse a packed LM at weight 1.0
    and no token bonus, far from what the recipe chose on dev (1.0 is not a point it
    tried; 0.3 without the bonus was 3.8 dev CER points worse than 0.3 with it), so
    :func:`decoding_kwargs` hands ``lm_weight`` and ``lm_token_bonus`` from the packed
    decoding config to ``PathwaySpeech2Text``; a caller's own values win.  One LM per
    language (``{lang}`` in the LM's paths, ``pathways.sh --lm_per_language true``) goes in
    as ``lm/<lang>/`` for each language of the ASR config, under the keys
    ``lm_train_config_<lang>`` / ``lm_file_<lang>``, and :func:`decoding_kwargs` hands it
    back as ``lm/{lang}/...`` paths.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch
import yaml
from torch import Tensor

from espnet_pathways.checkpoint import describe_load_error, load_state_dict
from espnet_pathways.fileio import atomic_output
from espnet_pathways.lm_fusion import LANG_FIELD, is_per_language, language_path
from espnet_pathways.mask_file import check_format, jsonable, mask_checksum, pack_bits, unpack_bits
from espnet_pathways.masks import PathwayMasks

__all__ = [
    "COMPACT_FORMAT",
    "COMPACT_VERSION",
    "COMPACT_KEY",
    "CompactFormatError",
    "IncompleteModelError",
    "check_packed_zip",
    "compact_state_dict",
    "decoding_kwargs",
    "expand_state_dict",
    "save_compact",
    "load_compact",
    "is_compact_file",
    "pack_model",
    "unpack_model",
    "expand_compact_file",
]

COMPACT_FORMAT = "espnet_pathways.compact_state_dict"
COMPACT_VERSION = 1
#: The ``meta.yaml`` key of the compact model file inside a packed zip.
COMPACT_KEY = "pathway_compact_model"

PathLike = Union[str, Path]


class CompactFormatError(ValueError):
    """A compact file is not ours, has an unknown version, or fails a check."""


class IncompleteModelError(ValueError):
    """A packed model zip that is truncated, corrupted or lacks a file it names."""


# --------------------------------------------------------------------------- compact


def compact_state_dict(
    state_dict: Mapping[str, Any], masks: PathwayMasks
) -> Dict[str, Any]:
    """Store only the weights inside the union of the pathways (see the module doc).

    Raises ``ValueError`` naming the parameter if a masked parameter is missing, has
    another shape than its mask, or has a non-zero weight outside the union (it would be
    lost: a pathway model must have exactly zero there).
    """
    masks.check_compatible(state_dict)
    union = {n: m.detach().cpu().reshape(-1) for n, m in masks.union().items()}
    masked: Dict[str, Dict[str, Any]] = {}
    for name, flat_union in union.items():
        w = state_dict[name].detach().cpu()
        flat = w.reshape(-1)
        outside = flat[~flat_union]
        nonzero = int(outside.count_nonzero())
        if nonzero:
            raise ValueError(
                f"parameter {name!r} has {nonzero} non-zero weights outside the union of "
                f"the pathways (max |w| {float(outside.abs().max()):.3g}); a pathway model "
                "has exact zeros there. Zero them (masks.apply_masks_ with masks.union()) "
                "or pack it dense (--compact false)"
            )
        entry: Dict[str, Any] = {
            "shape": list(w.shape),
            "union": pack_bits(flat_union),
            "values": flat[flat_union].clone(),
        }
        if w.is_floating_point():
            neg = torch.signbit(outside)
            if bool(neg.any()):  # -0.0 from W * 0: keep the bits exact
                entry["negative_zeros"] = pack_bits(neg)
        masked[name] = entry

    # Per-language bits at the union positions; identical masks stored once.
    pathways: List[Dict[str, Tensor]] = []
    pathway_of: Dict[str, int] = {}
    seen: Dict[bytes, int] = {}
    for lang in masks.languages:
        m = masks.for_language(lang)
        packed = {
            n: pack_bits(m[n].detach().cpu().reshape(-1)[union[n]]) for n in masks.param_names
        }
        digest = hashlib.sha256(
            b"".join(packed[n].numpy().tobytes() for n in masks.param_names)
        ).digest()
        if digest not in seen:
            seen[digest] = len(pathways)
            pathways.append(packed)
        pathway_of[lang] = seen[digest]

    masked_names = set(masked)
    cpu_masks = {lang: {n: t.cpu() for n, t in md.items()} for lang, md in masks.masks.items()}
    return {
        "format": COMPACT_FORMAT,
        "version": COMPACT_VERSION,
        "keys": list(state_dict),  # the original order
        "dense": {k: v for k, v in state_dict.items() if k not in masked_names},
        "masked": masked,
        "languages": masks.languages,
        "param_names": masks.param_names,
        "pathways": pathways,
        "pathway_of": pathway_of,
        "masks_meta": jsonable(masks.meta),
        "masks_checksum": mask_checksum(cpu_masks),
    }


def _check_compact(compact: Mapping[str, Any], where: str = "compact state dict") -> None:
    check_format(compact, COMPACT_FORMAT, COMPACT_VERSION, where, CompactFormatError)


def expand_state_dict(
    compact: Mapping[str, Any], where: str = "compact state dict"
) -> Tuple[Dict[str, Any], PathwayMasks]:
    """Inverse of :func:`compact_state_dict`: ``(dense state dict, PathwayMasks)``."""
    _check_compact(compact, where)
    masked = compact["masked"]
    state: Dict[str, Any] = {}
    union: Dict[str, Tensor] = {}
    for name, entry in masked.items():
        shape = tuple(entry["shape"])
        flat_union = unpack_bits(entry["union"], (int(torch.Size(shape).numel()),))
        values = entry["values"]
        if values.numel() != int(flat_union.count_nonzero()):
            raise CompactFormatError(
                f"{where}: parameter {name!r} has {values.numel()} stored weights but its "
                f"union keeps {int(flat_union.count_nonzero())}"
            )
        flat = values.new_zeros(flat_union.numel())
        flat[flat_union] = values
        if "negative_zeros" in entry:
            n_out = int((~flat_union).count_nonzero())
            neg = unpack_bits(entry["negative_zeros"], (n_out,))
            outside = flat.new_zeros(n_out)
            outside[neg] = -0.0
            flat[~flat_union] = outside
        state[name] = flat.reshape(shape)
        union[name] = flat_union
    dense = compact["dense"]
    out = {}
    for key in compact["keys"]:
        out[key] = state[key] if key in state else dense[key]

    names = list(compact["param_names"])
    shared: Dict[int, Dict[str, Tensor]] = {}
    masks: Dict[str, Dict[str, Tensor]] = {}
    for lang in compact["languages"]:
        idx = int(compact["pathway_of"][lang])
        if idx not in shared:
            packed = compact["pathways"][idx]
            md = {}
            for n in names:
                u = union[n]
                bits = unpack_bits(packed[n], (int(u.count_nonzero()),))
                full = torch.zeros_like(u)
                full[u] = bits
                md[n] = full.reshape(tuple(masked[n]["shape"]))
            shared[idx] = md
        masks[lang] = shared[idx]
    checksum = mask_checksum(masks)
    if checksum != compact["masks_checksum"]:
        raise CompactFormatError(
            f"{where}: mask checksum mismatch (stored {compact['masks_checksum'][:12]}..., "
            f"rebuilt {checksum[:12]}...): the file is corrupted"
        )
    return out, PathwayMasks(masks, dict(compact["masks_meta"]), source=where)


def save_compact(state_dict: Mapping[str, Any], masks: PathwayMasks, path: PathLike) -> Dict[str, Any]:
    compact = compact_state_dict(state_dict, masks)
    torch.save(compact, str(path))
    return compact


def load_compact(path: PathLike) -> Tuple[Dict[str, Any], PathwayMasks]:
    """Read and expand a compact file (``weights_only``: no code runs on load)."""
    try:
        compact = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise CompactFormatError(
            f"{path}: cannot read the compact model ({describe_load_error(e)}); the file is "
            "truncated or not a compact model") from e
    return expand_state_dict(compact, where=str(path))


def is_compact_file(path: PathLike) -> bool:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(obj, dict) and obj.get("format") == COMPACT_FORMAT


# --------------------------------------------------------------------------- packing

#: Config entries that name files the model needs at inference (besides the model).
PATH_KEYS: Tuple[Tuple[str, ...], ...] = (
    ("bpemodel",),
    ("normalize_conf", "stats_file"),
    ("token_list",),
)


def _get(d: Mapping[str, Any], keys: Tuple[str, ...]) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def _set(d: Dict[str, Any], keys: Tuple[str, ...], value: Any) -> None:
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


def _arcname(path: Path, root: Path, fallback_dir: str) -> str:
    """ESPnet's naming (path relative to the recipe dir), else ``<fallback_dir>/<name>``."""
    p = path.resolve()
    try:
        return str(p.relative_to(root.resolve()))
    except ValueError:
        return f"{fallback_dir}/{p.name}"


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    src = src.resolve()  # ESPnet's valid.loss.best.pth is a relative symlink: pack the file
    try:
        os.link(src, dst)  # no copy of a big model when on the same file system
    except OSError:
        shutil.copyfile(src, dst)


@contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _read_config(path: Path, what: str) -> Dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    with path.open(encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: not a {what} (a YAML mapping)")
    return cfg


def pack_model(
    asr_train_config: PathLike,
    asr_model_file: PathLike,
    outpath: PathLike,
    pathway_masks: Optional[PathLike] = None,
    compact: bool = False,
    root: Optional[PathLike] = None,
    option: Tuple[PathLike, ...] = (),
    lm_train_config: Optional[PathLike] = None,
    lm_file: Optional[PathLike] = None,
    decode_config: Optional[PathLike] = None,
) -> Dict[str, Any]:
    """Pack a (pathway) transducer into an ESPnet model zip (see the module doc).

    Relative paths in the config (``bpemodel``, ``normalize_conf.stats_file``, a
    ``token_list`` file, ``pathway_masks``) are read relative to ``root`` (default: the
    current directory, the recipe dir, as in ESPnet).  Inside the zip every file keeps
    its path relative to ``root`` (outside ``root``: ``files/<name>``) and the config
    names them by those paths, which ``espnet2.main_funcs.pack_funcs.unpack`` rewrites
    to the unpacked locations.  ``lm_train_config`` and ``lm_file`` (both or neither)
    pack a fusion LM, ``decode_config`` the decoding options it was fused with (its
    ``lm_weight`` and ``lm_token_bonus``).  Returns a summary (arcnames, sizes).
    """
    from espnet2.main_funcs.pack_funcs import pack

    root = Path(root or ".").resolve()
    outpath = Path(outpath).resolve()
    if (lm_train_config is None) != (lm_file is None):
        raise ValueError("an LM is packed with both --lm_train_config and --lm_file")

    def resolve(p: PathLike) -> Path:
        p = Path(p)
        return p if p.is_absolute() else root / p

    cfg_path = resolve(asr_train_config)
    cfg = _read_config(cfg_path, "training config")

    mask_src = pathway_masks or cfg.get("pathway_masks")
    masks = PathwayMasks.load(resolve(mask_src)) if mask_src else None
    if compact and masks is None:
        raise ValueError("--compact true needs pathway masks (--pathway_masks or the config's)")

    placed: Dict[str, Path] = {}  # arcname -> source

    def add(src: Path, fallback_dir: str = "files") -> str:
        name = _arcname(src, root, fallback_dir)
        base, i = name, 1
        while name in placed and placed[name].resolve() != src.resolve():
            stem, dot, ext = Path(base).name.partition(".")
            name = str(Path(base).parent / f"{stem}_{i}{dot}{ext}")
            i += 1
        placed[name] = src
        return name

    def add_named_files(config: Dict[str, Any], config_path: Path) -> None:
        """Pack the files a config names and point it at their names in the zip."""
        for keys in PATH_KEYS:
            value = _get(config, keys)
            if not isinstance(value, str) or value in ("", "none", "None"):
                continue
            src = resolve(value)
            if not src.exists():
                raise FileNotFoundError(
                    f"{config_path}: {'.'.join(keys)} names a missing file: {value}")
            _set(config, keys, add(src))

    add_named_files(cfg, cfg_path)
    model_dir = f"exp/{cfg_path.parent.name}"
    cfg_arc = _arcname(cfg_path, root, model_dir)
    model_src = resolve(asr_model_file)
    if not model_src.exists():
        raise FileNotFoundError(f"{model_src}: model file not found")

    yaml_cfgs: Dict[str, Tuple[str, Dict[str, Any]]] = {"asr_train_config": (cfg_arc, cfg)}
    files: Dict[str, str] = {}

    def add_lm(config: PathLike, model_file: PathLike, lang: Optional[str]) -> None:
        lm_cfg_path, lm_src = resolve(config), resolve(model_file)
        lm_cfg = _read_config(lm_cfg_path, "LM training config")
        if not lm_src.is_file():
            raise FileNotFoundError(f"{lm_src}: LM model file not found")
        add_named_files(lm_cfg, lm_cfg_path)
        if lang is None:
            lm_dir = f"exp/{lm_cfg_path.parent.name}"
            yaml_cfgs["lm_train_config"] = (_arcname(lm_cfg_path, root, lm_dir), lm_cfg)
            files["lm_file"] = add(lm_src, lm_dir)
        else:  # fixed names: decoding_kwargs puts {lang} back in place of <lang>
            yaml_cfgs[f"lm_train_config_{lang}"] = (f"lm/{lang}/config.yaml", lm_cfg)
            files[f"lm_file_{lang}"] = f"lm/{lang}/{lm_src.name}"
            placed[files[f"lm_file_{lang}"]] = lm_src

    if lm_train_config is not None and is_per_language(lm_train_config):
        if not is_per_language(lm_file):
            raise ValueError(f"one LM per language needs {LANG_FIELD} in --lm_file too")
        lm_languages = list(cfg.get("languages") or [])
        if not lm_languages:
            raise ValueError(f"{cfg_path}: one LM per language needs the languages of the "
                             "ASR config (its `languages`)")
        for lang in lm_languages:
            add_lm(language_path(lm_train_config, lang), language_path(lm_file, lang), lang)
    elif lm_train_config is not None:
        add_lm(lm_train_config, lm_file, None)
    if decode_config is not None:
        dec_path = resolve(decode_config)
        yaml_cfgs["decode_config"] = (_arcname(dec_path, root, "conf"),
                                      _read_config(dec_path, "decoding config"))

    options = [resolve(o) for o in option]
    outpath.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pathways_pack_", dir=outpath.parent) as tmp:
        stage = Path(tmp)
        if compact:
            assert masks is not None
            state = load_state_dict(model_src)  # names a truncated file
            arc = f"{Path(cfg_arc).parent}/{model_src.stem}.compact.pth"
            (stage / arc).parent.mkdir(parents=True, exist_ok=True)
            save_compact(state, masks, stage / arc)
            files[COMPACT_KEY] = arc
            # The masks live in the compact file; unpack_model writes them out.
            cfg["pathway_masks"] = None
        else:
            arc = _arcname(model_src, root, model_dir)
            placed[arc] = model_src
            files["asr_model_file"] = arc
            if masks is not None:
                m_arc = add(resolve(mask_src), model_dir)
                cfg["pathway_masks"] = m_arc
        for o in options:
            add(o)
        for name, src in placed.items():
            _place(src, stage / name)
        for arc_name, config in yaml_cfgs.values():
            (stage / arc_name).parent.mkdir(parents=True, exist_ok=True)
            with (stage / arc_name).open("w", encoding="utf-8") as f:
                yaml.safe_dump(config, f, allow_unicode=True)
        extra = [n for n in placed if n not in files.values()]
        # ESPnet's packer writes the zip in place: give it a temporary name, so that a
        # pack that stops leaves an earlier complete zip as it was.
        with atomic_output(outpath, suffix=".zip") as tmp_zip, _chdir(stage):
            pack(files=files, yaml_files={k: arc for k, (arc, _) in yaml_cfgs.items()},
                 option=extra, outpath=str(tmp_zip))
    summary = {
        "outpath": str(outpath),
        "compact": compact,
        "files": files,
        "asr_train_config": cfg_arc,
        "yaml_files": {k: arc for k, (arc, _) in yaml_cfgs.items()},
        "extra": sorted(extra),
        "size": outpath.stat().st_size,
    }
    logging.info("packed %s (%s%s, %.1f kB)", outpath, "compact" if compact else "dense",
                 " + LM" if any(is_lm_key(k) for k in files) else "", summary["size"] / 1e3)
    return summary


# --------------------------------------------------------------------------- unpacking


def expand_compact_file(
    compact_file: PathLike, asr_train_config: PathLike
) -> Dict[str, str]:
    """Expand an unpacked compact model once: writes ``<stem>.expanded/{model,masks}.pth``
    beside it and points the (unpacked, hence ours) config's ``pathway_masks`` at the
    masks.  Returns ``asr_model_file`` and ``pathway_masks``."""
    from filelock import FileLock

    compact_file = Path(compact_file)
    out = compact_file.with_name(compact_file.name + ".expanded")
    model_file, masks_file = out / "model.pth", out / "masks.pth"
    done = out / ".done"
    out.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out / ".lock")):
        if not done.exists():
            state, masks = load_compact(compact_file)
            torch.save(state, str(model_file))
            masks.save(masks_file)
            done.write_text(str(compact_file) + "\n")
        cfg_path = Path(asr_train_config)
        with cfg_path.open(encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        if cfg.get("pathway_masks") != str(masks_file):
            cfg["pathway_masks"] = str(masks_file)
            with atomic_output(cfg_path) as tmp, tmp.open("w", encoding="utf-8") as f:
                yaml.safe_dump(cfg, f, allow_unicode=True)
    return {"asr_model_file": str(model_file), "pathway_masks": str(masks_file)}


#: Config entries that name files, checked in a packed zip and after unpacking.
FILE_KEYS: Tuple[Tuple[str, ...], ...] = PATH_KEYS + (("pathway_masks",),)
#: The packed configs whose named files must be inside the zip (and
#: ``lm_train_config_<lang>``: one LM per language).
CONFIGS_WITH_FILES: Tuple[str, ...] = ("asr_train_config", "lm_train_config")


def is_config_with_files(key: str) -> bool:
    """Whether the packed config of ``key`` names files that must be in the zip."""
    return key in CONFIGS_WITH_FILES or key.startswith("lm_train_config_")


def is_lm_key(key: str) -> bool:
    """Whether a packed file's key is a fusion LM's (one, or one per language)."""
    return key in ("lm_file", "lm_train_config") or key.startswith(("lm_file_", "lm_train_config_"))


def _named_files(cfg: Mapping[str, Any]) -> List[Tuple[str, str]]:
    out = []
    for keys in FILE_KEYS:
        value = _get(cfg, keys)
        if isinstance(value, str) and value not in ("", "none", "None"):
            out.append((".".join(keys), value))
    return out


def check_packed_zip(path: PathLike) -> Dict[str, Any]:
    """The ``meta.yaml`` of a complete packed model, or :class:`IncompleteModelError`.

    Complete: a readable zip whose members all pass their CRC check (a truncated or
    corrupted copy fails here), with ``meta.yaml``, every file it lists, and every file
    the config names (``pathway_masks``, ``bpemodel``, ...) inside the zip: a config that
    named a file outside would silently use whatever has that name where it is run.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: packed model not found")
    try:
        with zipfile.ZipFile(path) as z:
            corrupted = z.testzip()
            names = set(z.namelist())
            if corrupted is not None:
                raise IncompleteModelError(
                    f"{path}: member {corrupted} of the zip is corrupted (CRC mismatch); "
                    "copy or pack the model again")
            if "meta.yaml" not in names:
                raise IncompleteModelError(
                    f"{path}: the zip is incomplete: it has no meta.yaml (pack models with "
                    "python -m espnet_pathways.bin.asr_pathways_pack)")
            meta = yaml.safe_load(z.read("meta.yaml"))
            yaml_files = meta.get("yaml_files") or {}
            listed = {**yaml_files, **(meta.get("files") or {})}
            for key, arc in listed.items():
                if arc not in names:
                    raise IncompleteModelError(
                        f"{path}: the zip is incomplete: it lacks {arc} ({key} in "
                        "meta.yaml); pack the model again")
            cfgs = {k: yaml.safe_load(z.read(arc))
                    for k, arc in yaml_files.items() if is_config_with_files(k)}
    except (zipfile.BadZipFile, zlib.error, EOFError, yaml.YAMLError) as e:
        raise IncompleteModelError(
            f"{path}: not a complete model zip ({type(e).__name__}: {e}); the file is "
            "truncated or corrupted: copy or pack it again") from None
    for which, cfg in cfgs.items():
        for key, value in _named_files(cfg if isinstance(cfg, Mapping) else {}):
            if value not in names:
                raise IncompleteModelError(
                    f"{path}: the zip is incomplete: its {which} names {key}: {value}, "
                    "which is not in the zip; pack the model again with asr_pathways_pack")
    return meta


def check_unpacked_config(train_config: PathLike, source: str) -> None:
    """After unpacking, every file the config names must be a file of the unpacked
    model (never a relative path, which would be read from the current directory)."""
    cfg_path = Path(train_config).resolve()
    root = next((d for d in cfg_path.parents if (d / "meta.yaml").is_file()), cfg_path.parent)
    with cfg_path.open(encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    for key, value in _named_files(cfg):
        p = Path(value)
        inside = p.is_absolute() and (root == p.resolve() or root in p.resolve().parents)
        if not inside or not p.is_file():
            raise IncompleteModelError(
                f"{source}: the packed model is incomplete: its config names {key}: "
                f"{value}, which is not a file of the unpacked model ({root}); pack the "
                "model again with asr_pathways_pack")


def unpack_model(model_tag: PathLike, cachedir: Optional[PathLike] = None) -> Dict[str, str]:
    """``ModelDownloader.download_and_unpack`` (a zip path, a model-zoo name or a Hugging
    Face id), then expand a compact model.  Returns the unpacked files by ESPnet's keys:
    ``asr_train_config``, ``asr_model_file`` (+ ``pathway_masks`` for a compact zip; +
    ``lm_train_config``, ``lm_file``, ``decode_config`` for a zip with an LM), which
    :func:`decoding_kwargs` turns into ``PathwaySpeech2Text``'s arguments.

    A local zip is checked first (:func:`check_packed_zip`); if unpacking fails anyway,
    the cache entries it created are removed, so that no half-unpacked model (or its
    ``.lock``) is left behind to be found by the next run.
    """
    from espnet_model_zoo.downloader import ModelDownloader

    if Path(model_tag).is_file():
        check_packed_zip(model_tag)
    d = ModelDownloader(cachedir) if cachedir is not None else ModelDownloader()
    cache = Path(d.cachedir)
    before = set(cache.iterdir()) if cache.is_dir() else set()
    try:
        return expand_unpacked(d.download_and_unpack(str(model_tag)), source=str(model_tag))
    except BaseException as e:
        for new in (set(cache.iterdir()) if cache.is_dir() else set()) - before:
            if new.is_dir() and not new.is_symlink():
                shutil.rmtree(new, ignore_errors=True)
            else:
                new.unlink(missing_ok=True)
        if isinstance(e, (zipfile.BadZipFile, zlib.error, EOFError)):
            raise IncompleteModelError(
                f"{model_tag}: cannot unpack the model ({type(e).__name__}: {e}); the zip "
                "is truncated or corrupted: copy or pack it again") from None
        raise


def expand_unpacked(info: Mapping[str, str], source: str = "the model") -> Dict[str, str]:
    """The dict ``download_and_unpack`` returned, with a compact model expanded and the
    config's files checked (:func:`check_unpacked_config`)."""
    info = dict(info)
    if COMPACT_KEY in info:
        compact_file = info.pop(COMPACT_KEY)
        info.update(expand_compact_file(compact_file, info["asr_train_config"]))
    for key in info:
        if is_config_with_files(key):
            check_unpacked_config(info[key], source)
    return info


#: What the packed decoding config sets for a packed LM (the rest of it documents how
#: the recipe decoded; the caller's decoding options stay the caller's).
LM_DECODING_KEYS: Tuple[str, ...] = ("lm_weight", "lm_token_bonus")


def decoding_kwargs(info: Mapping[str, str], use_lm: bool = True) -> Dict[str, Any]:
    """``PathwaySpeech2Text`` keyword arguments from an unpacked model (:func:`unpack_model`):
    its files, and with a packed LM (``use_lm``) the fusion weights of the packed decoding
    config.  ``use_lm=False`` decodes a zip that carries an LM with the acoustic model
    alone."""
    kwargs: Dict[str, Any] = dict(info)
    decode_config = kwargs.pop("decode_config", None)
    per_language = {k: kwargs.pop(k) for k in list(kwargs)
                    if k.startswith(("lm_file_", "lm_train_config_"))}
    if per_language and use_lm:  # lm/<lang>/x -> lm/{lang}/x, as PathwaySpeech2Text takes it
        for key in ("lm_train_config", "lm_file"):
            p = Path(next(v for k, v in sorted(per_language.items()) if k.startswith(key + "_")))
            kwargs[key] = str(p.parent.parent / LANG_FIELD / p.name)
    if not use_lm:
        kwargs.pop("lm_train_config", None)
        kwargs.pop("lm_file", None)
    if "lm_file" in kwargs and decode_config is not None:
        with open(decode_config, encoding="utf-8") as f:
            decoding = yaml.safe_load(f) or {}
        kwargs.update({k: decoding[k] for k in LM_DECODING_KEYS if k in decoding})
    return kwargs
