"""Dynamic int8 quantization of dense, pathway and exported pathway transducers.

The quantization is PyTorch's dynamic quantization, the one ESPnet's transducer
``Speech2Text`` applies with ``quantize_asr_model=True`` (options ``quantize_modules``,
default ``["Linear"]``, and ``quantize_dtype``, default ``"qint8"``): int8 weights with
one symmetric scale per tensor, activations quantized on the fly.  Three things here are
ours, because ESPnet has no notion of pathways or of storing a quantized model:

* **Pathways quantize per language.**  Language ``l`` computes with ``W * m_l``.  The
  per-tensor scale of ``W * m_l`` depends on the largest weight *kept by* ``m_l``, so
  quantizing the union weights once and masking the int8 codes afterwards would give
  another (coarser) model than the one a user ships for ``l``.
  :class:`PathwayQuantizer` bakes ``W * m_l`` into a float copy, then quantizes it;
  the result equals the quantized export of ``l`` (``export_pathway`` + quantization).
* **A file format for int8 models** (:func:`save_int8`, :func:`load_int8`,
  :func:`load_int8_into`): ``torch.save`` of a quantized model's ``state_dict`` is not
  loadable with ``weights_only=True`` (quantized LSTMs hold TorchScript objects) and
  ESPnet's zip does not compress, so the int8 codes of each quantized layer are
  stored with their scale, and every tensor that is mostly zeros (a pathway at 70%
  sparsity) is stored as its non-zero values plus a bit-packed map of where they are.
  That is what makes one language's int8 pathway small on disk.  The file loads with
  ``weights_only=True``; it holds quantized ``Linear`` and ``LSTM`` layers (ESPnet's
  ``--quantize_modules``; the default ``Linear`` leaves a recurrent decoder in float32).
  Weight matrices that dynamic quantization leaves in float (convolutions, the
  predictor's embedding) are stored as int8 codes with a scale per output channel and
  computed in float after loading (format version 2; version 1 files still load).
* **Loading** (:func:`int8_speech2text_kwargs`): ESPnet builds the model from the config
  with random weights and quantizes it as usual; :func:`load_int8_into` then loads the
  stored codes into that quantized model, so every reference ESPnet's ``Speech2Text``
  holds (beam search, decoder, joint network) stays valid.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Type, Union

import torch
from torch import Tensor, nn

from espnet_pathways.checkpoint import load_state_dict
from espnet_pathways.mask_file import check_format, pack_bits, unpack_bits
from espnet_pathways.masks import PathwayMasks, apply_masks_

__all__ = [
    "INT8_FORMAT",
    "INT8_VERSION",
    "QUANTIZABLE_MODULES",
    "Int8FormatError",
    "quantize_spec",
    "quantize_model",
    "PathwayQuantizer",
    "int8_state",
    "save_int8",
    "load_int8",
    "is_int8_file",
    "load_int8_into",
    "int8_speech2text_kwargs",
    "quantize_model_file",
    "file_size_mb",
    "quantized_modules_of",
    "round_weights_to_int8_",
    "weight_only_names",
]

INT8_FORMAT = "espnet_pathways.int8_state_dict"
#: 2: float weight matrices outside the quantized layers (convolutions, embeddings) are
#: stored as int8 codes with one scale per output channel (version 1 stored them float32).
INT8_VERSION = 2
READABLE_INT8_VERSIONS = (1, 2)
#: Float tensors stored as int8 codes (weight-only) when ``.weight``, >= 2-D and at least
#: this large: convolutions and embeddings; norms, biases and buffers stay float32.
WEIGHT_ONLY_MIN_NUMEL = 1024
#: What ESPnet's ``--quantize_modules`` accepts (``torch.nn`` class names).
QUANTIZABLE_MODULES = ("Linear", "LSTM")

PathLike = Union[str, Path]


class Int8FormatError(ValueError):
    """An int8 file is not ours, has an unknown version, or asks for something unsupported."""


# --------------------------------------------------------------------------- quantizing


def quantize_spec(quantize_modules: Optional[Sequence[str]] = None) -> Set[Type[nn.Module]]:
    """ESPnet's ``--quantize_modules`` as the module classes ``quantize_dynamic`` takes
    (``None``: ``{nn.Linear}``, ESPnet's default)."""
    names = list(quantize_modules) if quantize_modules else ["Linear"]
    bad = [n for n in names if n not in QUANTIZABLE_MODULES]
    if bad:
        raise ValueError(
            f"--quantize_modules {' '.join(bad)}: dynamic quantization supports "
            f"{' and '.join(QUANTIZABLE_MODULES)} (as in ESPnet)"
        )
    return {getattr(nn, n) for n in names}


def quantize_model(
    model: nn.Module,
    quantize_modules: Optional[Sequence[str]] = None,
    quantize_dtype: str = "qint8",
) -> nn.Module:
    """A dynamically quantized copy of ``model`` (``model`` itself is left as it is);
    with ``qint8`` the weights left in float get their int8 values too
    (:func:`round_weights_to_int8_`), as the stored int8 file holds them."""
    if quantize_dtype not in ("qint8", "float16"):
        raise ValueError(f"--quantize_dtype {quantize_dtype}: choose qint8 or float16 (as in ESPnet)")
    qmodel = torch.ao.quantization.quantize_dynamic(
        model, quantize_spec(quantize_modules), dtype=getattr(torch, quantize_dtype)
    ).eval()
    if quantize_dtype == "qint8":
        round_weights_to_int8_(qmodel)
    return qmodel


class PathwayQuantizer:
    """Per-language quantized weights of a pathway model (see the module doc).

    ``state_dict(lang)`` is the ``state_dict`` of ``quantize_model(W * m_lang)``; it loads
    into any model made by :func:`quantize_model` from the same architecture, which is
    how ``PathwaySpeech2Text`` switches a quantized model's language.  Results are cached
    (an int8 state is about a quarter of the float model).
    """

    def __init__(
        self,
        float_model: nn.Module,
        masks: PathwayMasks,
        quantize_modules: Optional[Sequence[str]] = None,
        quantize_dtype: str = "qint8",
    ) -> None:
        masks.check_compatible(float_model)
        self.float_model = float_model.eval()
        self.masks = masks
        self.quantize_modules = quantize_modules
        self.quantize_dtype = quantize_dtype
        self._cache: Dict[str, Dict[str, Any]] = {}

    def model(self, lang: str) -> nn.Module:
        """The quantized model of ``lang``'s pathway."""
        baked = copy.deepcopy(self.float_model)
        apply_masks_(baked, self.masks.for_language(lang))
        return quantize_model(baked, self.quantize_modules, self.quantize_dtype)

    def state_dict(self, lang: str) -> Dict[str, Any]:
        if lang not in self._cache:
            self._cache[lang] = self.model(lang).state_dict()
        return self._cache[lang]


# --------------------------------------------------------------------------- storing


def _sparse_or_dense(t: Tensor) -> Any:
    """``t``, or (when smaller) its non-zero values plus a bit map of their positions."""
    t = t.detach().cpu()
    flat = t.reshape(-1)
    nonzero = flat != 0
    nnz = int(nonzero.count_nonzero())
    if nnz * t.element_size() + (t.numel() + 7) // 8 >= t.numel() * t.element_size():
        return t.clone()
    return {"shape": list(t.shape), "nonzero": pack_bits(nonzero), "values": flat[nonzero].clone()}


def _int8_codes(t: Tensor) -> Tuple[Tensor, Tensor]:
    """Symmetric int8 codes of ``t`` with one scale per output channel (dim 0)."""
    t = t.detach().float()
    amax = t.abs().reshape(t.shape[0], -1).amax(dim=1)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    view = (-1,) + (1,) * (t.ndim - 1)
    codes = torch.round(t / scale.view(view)).clamp_(-127, 127).to(torch.int8)
    return codes, scale


def _dequantize(codes: Tensor, scale: Tensor) -> Tensor:
    return codes.float() * scale.view((-1,) + (1,) * (codes.ndim - 1))


def weight_only_names(model: nn.Module) -> List[str]:
    """Float weights that dynamic quantization leaves in float and int8 deployment stores
    as int8 codes: ``*.weight`` parameters of >= 2 dimensions and at least
    :data:`WEIGHT_ONLY_MIN_NUMEL` elements (convolutions, the predictor's embedding)."""
    return [n for n, p in model.named_parameters()
            if n.endswith(".weight") and p.ndim >= 2 and p.is_floating_point()
            and p.numel() >= WEIGHT_ONLY_MIN_NUMEL]


@torch.no_grad()
def round_weights_to_int8_(model: nn.Module) -> List[str]:
    """Give the float weights of :func:`weight_only_names` their int8 values (codes times
    the channel scale), in place, so that a model quantized at load time computes exactly
    what its stored int8 file computes.  Returns the names."""
    names = weight_only_names(model)
    params = dict(model.named_parameters())
    for n in names:
        p = params[n]
        p.copy_(_dequantize(*_int8_codes(p)).to(p.dtype))
    return names


def _weight_only_int8(t: Tensor) -> Dict[str, Any]:
    """A float weight that dynamic quantization leaves in float (a convolution, an
    embedding) stored as int8 codes with one symmetric scale per output channel; it is
    computed in float after loading (codes * scale).  Zeros stay exact zeros, so a
    pathway's sparsity is still stored as a bit map."""
    codes, scale = _int8_codes(t.detach().cpu())
    return {"int8_codes": _sparse_or_dense(codes), "channel_scale": scale}


def _expand(entry: Any) -> Tensor:
    if isinstance(entry, Tensor):
        return entry
    if "int8_codes" in entry:  # _weight_only_int8
        return _dequantize(_expand(entry["int8_codes"]), entry["channel_scale"])
    shape = tuple(entry["shape"])
    nonzero = unpack_bits(entry["nonzero"], (int(torch.Size(shape).numel()),))
    flat = entry["values"].new_zeros(nonzero.numel())
    flat[nonzero] = entry["values"]
    return flat.reshape(shape)


def _quantized_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """The dynamically quantized ``Linear`` and ``LSTM`` modules of ``model``, by name."""
    kinds = (torch.ao.nn.quantized.dynamic.Linear, torch.ao.nn.quantized.dynamic.LSTM)
    return {n: m for n, m in model.named_modules() if isinstance(m, kinds)}


def _weights_biases(mod: nn.Module) -> Tuple[Dict[str, Tensor], Dict[str, Optional[Tensor]]]:
    """A quantized module's weights and biases by name, through its public accessors."""
    if isinstance(mod, torch.ao.nn.quantized.dynamic.Linear):
        return {"weight": mod.weight()}, {"bias": mod.bias()}
    return dict(mod.get_weight()), dict(mod.get_bias())


def _set_weights_biases(mod: nn.Module, weights: Dict[str, Tensor], biases: Dict[str, Any]) -> None:
    if isinstance(mod, torch.ao.nn.quantized.dynamic.Linear):
        mod.set_weight_bias(weights["weight"], biases["bias"])
    else:
        mod.set_weight_bias({**weights, **biases})


def int8_state(
    qmodel: nn.Module, quantize_modules: Optional[Sequence[str]] = None
) -> Dict[str, Any]:
    """The storable form of a model made by :func:`quantize_model` (``qint8``).

    Each quantized module (``Linear``, ``LSTM``) is stored as the int8 codes, scale and
    zero point of each of its weights plus its float biases; every other tensor of the
    state dict is stored as it is; tensors that are mostly zeros keep only their
    non-zero values.
    """
    names = list(quantize_modules) if quantize_modules else ["Linear"]
    quantized: Dict[str, Any] = {}
    for name, mod in _quantized_modules(qmodel).items():
        try:
            weights, biases = _weights_biases(mod)
        except (RuntimeError, NotImplementedError) as e:  # float16 packed weights
            raise Int8FormatError(
                f"{name}: cannot read int8 weights ({type(e).__name__}); the stored int8 "
                "format holds per-tensor qint8 (quantize_dtype qint8)"
            ) from None
        entry: Dict[str, Any] = {"weights": {}, "biases": {}}
        for wname, weight in weights.items():
            if weight.dtype != torch.qint8 or weight.qscheme() not in (
                torch.per_tensor_symmetric, torch.per_tensor_affine
            ):
                raise Int8FormatError(
                    f"{name}.{wname}: {weight.dtype} weights; the stored "
                    "int8 format holds per-tensor qint8 (quantize_dtype qint8)"
                )
            entry["weights"][wname] = {
                "codes": _sparse_or_dense(weight.int_repr()),
                "scale": float(weight.q_scale()),
                "zero_point": int(weight.q_zero_point()),
            }
        for bname, bias in biases.items():
            entry["biases"][bname] = None if bias is None else bias.detach().cpu().clone()
        quantized[name] = entry
    plain: Dict[str, Any] = {}
    weight_only = set(weight_only_names(qmodel))
    for key, value in qmodel.state_dict().items():
        if "._packed_params." in key or "._all_weight_values." in key:
            continue
        if not isinstance(value, Tensor) or value.is_quantized:
            raise Int8FormatError(f"{key}: cannot store a {type(value).__name__} in the int8 format")
        if key in weight_only:
            plain[key] = _weight_only_int8(value)
        else:
            plain[key] = _sparse_or_dense(value)
    return {
        "format": INT8_FORMAT,
        "version": INT8_VERSION,
        "quantize_modules": names,
        "quantize_dtype": "qint8",
        "quantized": quantized,
        "tensors": plain,
    }


def save_int8(
    qmodel: nn.Module, path: PathLike, quantize_modules: Optional[Sequence[str]] = None
) -> Dict[str, Any]:
    """Write :func:`int8_state` of ``qmodel`` to ``path`` (atomically)."""
    from espnet_pathways.fileio import atomic_torch_save

    state = int8_state(qmodel, quantize_modules)
    atomic_torch_save(state, path)
    return state


def _check(state: Any, where: str) -> None:
    version = state.get("version") if isinstance(state, Mapping) else None
    check_format(state, INT8_FORMAT,
                 version if version in READABLE_INT8_VERSIONS else INT8_VERSION,
                 where, Int8FormatError)


def load_int8(path: PathLike) -> Dict[str, Any]:
    """Read an int8 file (``weights_only``: no code runs on load)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise Int8FormatError(f"{path}: cannot read ({type(e).__name__}: {e})") from e
    _check(state, str(path))
    return state


def is_int8_file(path: Optional[PathLike]) -> bool:
    """Whether ``path`` is an int8 file of ours (memory-mapped: cheap on big float files)."""
    if path is None or not Path(path).is_file():
        return False
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return isinstance(obj, Mapping) and obj.get("format") == INT8_FORMAT


def load_int8_into(qmodel: nn.Module, state: Mapping[str, Any], where: str = "int8 file") -> None:
    """Load a stored int8 state into ``qmodel`` (a :func:`quantize_model` of the same
    architecture with the same ``quantize_modules``), strictly: a missing or extra entry
    is an error naming it."""
    _check(state, where)
    modules = _quantized_modules(qmodel)
    stored = state["quantized"]
    if set(modules) != set(stored):
        raise Int8FormatError(
            f"{where}: quantized layers differ from the model's: missing "
            f"{sorted(set(modules) - set(stored))[:3]}, unexpected {sorted(set(stored) - set(modules))[:3]}"
        )
    # The model's own state dict as the template: it carries the modules' versions, which
    # the quantized modules' loaders read; their packed weights are set below.
    full = qmodel.state_dict()
    plain = {k for k in full if "._packed_params." not in k and "._all_weight_values." not in k}
    if plain != set(state["tensors"]):
        raise Int8FormatError(
            f"{where}: does not fit the model of its config: missing "
            f"{sorted(plain - set(state['tensors']))[:3]}, unexpected "
            f"{sorted(set(state['tensors']) - plain)[:3]}"
        )
    for key, value in state["tensors"].items():
        full[key] = _expand(value)
    try:
        qmodel.load_state_dict(full, strict=True)
    except (RuntimeError, KeyError) as e:
        raise Int8FormatError(f"{where}: does not fit the model of its config: {e}") from e
    for name, entry in stored.items():
        weights = {}
        for wname, w in entry["weights"].items():
            # quantize_per_tensor(q * s, s, z) gives back exactly the codes q: q * s is exact
            # in float32 (q has 8 significant bits), and so is the division by s.
            weights[wname] = torch.quantize_per_tensor(
                (_expand(w["codes"]).float() - w["zero_point"]) * w["scale"],
                w["scale"], w["zero_point"], torch.qint8,
            )
        _set_weights_biases(modules[name], weights, entry["biases"])


def int8_speech2text_kwargs(kwargs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """If ``kwargs["asr_model_file"]`` is an int8 file: rewrite ``kwargs`` so that ESPnet's
    ``Speech2Text`` builds the model from the config without weights and quantizes it
    with the file's options, and return the stored state (for :func:`load_int8_into`)."""
    model_file = kwargs.get("asr_model_file")
    if not is_int8_file(model_file):
        return None
    state = load_int8(model_file)
    if kwargs.get("quantize_dtype", "qint8") != "qint8":
        raise ValueError(f"{model_file} is an int8 model: --quantize_dtype must be qint8")
    asked = kwargs.get("quantize_modules")
    if asked and sorted(asked) != sorted(state["quantize_modules"]):
        raise ValueError(
            f"{model_file} was quantized with --quantize_modules "
            f"{' '.join(state['quantize_modules'])}, not {' '.join(asked)}"
        )
    kwargs.update(asr_model_file=None, quantize_asr_model=True,
                  quantize_modules=list(state["quantize_modules"]), quantize_dtype="qint8")
    logging.info("%s: stored int8 model (%s quantized)", model_file,
                 " ".join(state["quantize_modules"]))
    return state


def quantize_model_file(
    asr_train_config: PathLike,
    asr_model_file: PathLike,
    out_path: PathLike,
    quantize_modules: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """Quantize a trained dense model (or an exported pathway) and store it as int8.

    A config with ``pathway_masks`` is refused: a pathway model is quantized per
    language, through ``export_pathway --lang <l> --quantize_asr_model true``.
    Returns a summary (sizes of the float and the int8 file).
    """
    import yaml

    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    with open(asr_train_config, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    if cfg.get("pathway_masks"):
        raise ValueError(
            f"{asr_train_config}: a pathway model (pathway_masks: {cfg['pathway_masks']}) is "
            "quantized per language: export_pathway --lang <l> --quantize_asr_model true"
        )
    state = load_state_dict(asr_model_file)  # an unreadable checkpoint names its file
    model, _ = ASRPathwaysTask.build_model_from_file(str(asr_train_config), None, "cpu")
    model.load_state_dict(state)
    qmodel = quantize_model(model, quantize_modules, "qint8")
    save_int8(qmodel, out_path, quantize_modules)
    summary = {
        "float_file": str(asr_model_file), "float_mb": file_size_mb(asr_model_file),
        "int8_file": str(out_path), "int8_mb": file_size_mb(out_path),
        "quantize_modules": list(quantize_modules) if quantize_modules else ["Linear"],
    }
    logging.info("%s (%.3f MB) -> %s (%.3f MB, int8)", asr_model_file, summary["float_mb"],
                 out_path, summary["int8_mb"])
    return summary


def file_size_mb(path: PathLike) -> float:
    """Size of a file in MB (10^6 bytes), as the deployment table reports it."""
    return Path(path).stat().st_size / 1e6


def quantized_modules_of(model: nn.Module) -> List[str]:
    """Names of the dynamically quantized modules of ``model`` (for logs and tests)."""
    return [n for n, m in model.named_modules()
            if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
