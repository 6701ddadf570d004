"""Tests for espnet_pathways.masks on a tiny plain-torch model (no ESPnet needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from espnet_pathways.masks import (
    MaskFileError,
    PathwayMasks,
    apply_masks_,
    masked_parameters,
    pack_bits,
    prunable_parameter_names,
    unpack_bits,
)
from espnet_pathways.pruning import random_masks

PRUNABLE = ["conv.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "proj.weight"]


class Tiny(nn.Module):
    """Embedding, Conv1d, LayerNorm, LSTM, Linear and an ESPnet-named RNN-T output layer."""

    def __init__(self, hidden: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.conv = nn.Conv1d(4, 6, 3, padding=1)
        self.norm = nn.LayerNorm(6)
        self.lstm = nn.LSTM(6, hidden, batch_first=True)
        self.proj = nn.Linear(hidden, 7)
        self.joint_network = nn.Module()
        self.joint_network.lin_out = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, 4)
        h = self.norm(self.conv(x.transpose(1, 2)).transpose(1, 2))
        h, _ = self.lstm(h)
        return self.joint_network.lin_out(torch.tanh(self.proj(h)))


def make_masks(model: nn.Module, seeds: dict[str, int], sparsity: float = 0.5) -> PathwayMasks:
    params = dict(model.named_parameters())
    shapes = {n: params[n].shape for n in prunable_parameter_names(model)}
    masks = {lang: random_masks(shapes, sparsity, "global", seed) for lang, seed in seeds.items()}
    return PathwayMasks(masks, {"method": "random", "target_sparsity": sparsity})


@pytest.fixture
def model() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


def test_prunable_names(model: Tiny) -> None:
    assert prunable_parameter_names(model) == PRUNABLE
    assert prunable_parameter_names(model, exclude=()) == PRUNABLE + ["joint_network.lin_out.weight"]
    # a custom exclude replaces the default one
    only = ["conv.weight", "proj.weight", "joint_network.lin_out.weight"]
    assert prunable_parameter_names(model, exclude=(r"^lstm\.",)) == only


def test_masked_forward_uses_zeroed_weights(model: Tiny) -> None:
    pm = make_masks(model, {"en": 1})
    mask = pm.for_language("en")
    eff = masked_parameters(model, mask)
    params = dict(model.named_parameters())
    for name, m in mask.items():
        assert torch.all(eff[name][~m] == 0)
        assert torch.equal(eff[name][m], params[name][m])
    assert eff["proj.bias"] is params["proj.bias"]  # unmasked parameters pass through

    x = torch.randn(2, 8, 4)
    out = functional_call(model, eff, (x,))
    reference = Tiny()
    reference.load_state_dict(model.state_dict())
    apply_masks_(reference, mask)
    torch.testing.assert_close(out, reference(x), rtol=0, atol=0)
    for name, m in mask.items():  # apply_masks_ zeroes exactly the pruned weights
        assert torch.all(dict(reference.named_parameters())[name][~m] == 0)


def test_gradient_outside_mask_is_exactly_zero(model: Tiny) -> None:
    mask = make_masks(model, {"en": 1}).for_language("en")
    x = torch.randn(3, 6, 4)
    functional_call(model, masked_parameters(model, mask), (x,)).pow(2).sum().backward()
    params = dict(model.named_parameters())
    for name in PRUNABLE:  # Conv1d, LSTM (ih, hh), Linear
        g = params[name].grad
        assert g is not None
        assert torch.all(g[~mask[name]] == 0), name
        assert torch.any(g[mask[name]] != 0), name
    assert params["joint_network.lin_out.weight"].grad.abs().sum() > 0


def test_unknown_language(model: Tiny) -> None:
    pm = make_masks(model, {"en": 1, "it": 2})
    with pytest.raises(KeyError, match=r"'xx'.*\['en', 'it'\]"):
        pm.for_language("xx")


def test_dense_masks(model: Tiny) -> None:
    pm = PathwayMasks.from_model_dense(model, ["en", "fr"])
    assert pm.languages == ["en", "fr"] and pm.param_names == PRUNABLE
    assert pm.sparsity("en") == 0.0 and pm.union_sparsity() == 0.0
    assert pm.kept_parameters("fr") == pm.total_parameters()
    pm.check_compatible(model)


def test_statistics_on_hand_made_masks() -> None:
    a = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    b = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    c = torch.tensor([[1, 0], [0, 0]], dtype=torch.bool)
    pm = PathwayMasks({"a": {"w": a, "v": c}, "b": {"w": b, "v": c.clone()}})
    # |a| = 4 + 1, |b| = 3 + 1, |a & b| = 2 + 1, |a | b| = 5 + 1, total = 12
    assert pm.kept_parameters("a") == 5 and pm.kept_parameters("b") == 4
    assert pm.sparsity("a") == pytest.approx(7 / 12)
    assert pm.layer_sparsity("b") == {"w": pytest.approx(5 / 8), "v": pytest.approx(3 / 4)}
    assert pm.overlap("a", "b") == pytest.approx(3 / 5)
    assert pm.overlap("b", "a") == pytest.approx(3 / 4)
    assert pm.iou("a", "b") == pytest.approx(3 / 6)
    assert pm.overlap_table() == {
        "a": {"a": 1.0, "b": pytest.approx(0.6)},
        "b": {"a": pytest.approx(0.75), "b": 1.0},
    }
    assert torch.equal(pm.union()["w"], a | b) and torch.equal(pm.intersection()["w"], a & b)
    assert pm.union_sparsity() == pytest.approx(6 / 12)
    table = pm.summary_table()
    assert "| a | 0.5833 | 5 |" in table and "union kept: 6" in table


def test_inconsistent_masks_rejected() -> None:
    ones = torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="different parameters"):
        PathwayMasks({"a": {"w": ones}, "b": {"v": ones}})
    with pytest.raises(ValueError, match="shape"):
        PathwayMasks({"a": {"w": ones}, "b": {"w": torch.ones(2, 3, dtype=torch.bool)}})
    with pytest.raises(TypeError, match="bool"):
        PathwayMasks({"a": {"w": torch.ones(2, 2)}})


def test_save_load_round_trip(model: Tiny, tmp_path: Path) -> None:
    pm = make_masks(model, {"en": 1, "fr": 2, "it": 3})
    pm.meta["source_checkpoint"] = Path("/exp/dense/valid.acc.best.pth")  # not JSON: stringified
    path = tmp_path / "masks.pth"
    pm.save(path)
    loaded = PathwayMasks.load(path)
    assert loaded.languages == pm.languages and loaded.param_names == pm.param_names
    assert loaded.meta == {**pm.meta, "source_checkpoint": "/exp/dense/valid.acc.best.pth"}
    for lang in pm.languages:
        for name, m in pm.for_language(lang).items():
            assert loaded.for_language(lang)[name].dtype == torch.bool
            assert torch.equal(loaded.for_language(lang)[name], m)
    loaded.check_compatible(model)
    loaded.check_compatible(model.state_dict())
    with pytest.raises(KeyError, match=str(path)):
        loaded.for_language("nl")


def test_corrupted_file_rejected(model: Tiny, tmp_path: Path) -> None:
    path = tmp_path / "masks.pth"
    make_masks(model, {"en": 1}).save(path)
    payload = torch.load(path, weights_only=True)
    flipped = payload["masks"]["en"]["proj.weight"]
    flipped[0, 0] = ~flipped[0, 0]  # one edited bit
    torch.save(payload, path)
    with pytest.raises(MaskFileError, match=rf"{path}.*checksum"):
        PathwayMasks.load(path)

    payload["format"] = "something.else"
    torch.save(payload, path)
    with pytest.raises(MaskFileError, match="not an espnet_pathways.masks file"):
        PathwayMasks.load(path)

    path.write_bytes(b"definitely not a torch file")
    with pytest.raises(MaskFileError, match=str(path)):
        PathwayMasks.load(path)


def test_masks_for_other_model_rejected(model: Tiny, tmp_path: Path) -> None:
    path = tmp_path / "masks.pth"
    make_masks(model, {"en": 1}).save(path)
    pm = PathwayMasks.load(path)

    wider = Tiny(hidden=9)
    with pytest.raises(ValueError, match=rf"{path}.*'lstm.weight_ih_l0' has shape"):
        pm.check_compatible(wider)
    with pytest.raises(ValueError, match="shape"):
        pm.check_compatible(wider.state_dict())

    state = model.state_dict()
    del state["proj.weight"]
    with pytest.raises(ValueError, match="'proj.weight' is not in the model"):
        pm.check_compatible(state)

    extra = nn.Sequential()
    extra.add_module("tiny", model)  # names become tiny.*: nothing matches
    with pytest.raises(ValueError, match="not in the model"):
        pm.check_compatible(extra)

    partial = PathwayMasks({"en": {n: m for n, m in pm.for_language("en").items() if n != "conv.weight"}})
    with pytest.raises(ValueError, match=r"have no mask: \['conv.weight'\]"):
        partial.check_compatible(model)


@pytest.mark.parametrize("shape", [(3, 5, 7), (8,), (1,), (0,), (16, 2)])
def test_pack_bits_round_trip(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(shape, generator=g) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == (mask.numel() + 7) // 8
    assert np.array_equal(packed.numpy(), np.packbits(mask.numpy().reshape(-1)))
    restored = unpack_bits(packed, shape)
    assert restored.dtype == torch.bool and torch.equal(restored, mask)
    with pytest.raises(ValueError):
        unpack_bits(packed, (mask.numel() + 9,))


def test_to_device_copies(model: Tiny) -> None:
    pm = make_masks(model, {"en": 1})
    moved = pm.to("cpu")
    assert moved is not pm and moved.meta == pm.meta
    assert all(torch.equal(moved.for_language("en")[n], m) for n, m in pm.for_language("en").items())


# ------------------------------------------------------------------ file format (mask_file)
def _fixed_masks() -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    shapes = {"a.weight": (5, 3), "b.weight": (7, 2, 3), "c.weight": (1, 9)}
    return {lang: {n: torch.rand(s, generator=g) < 0.4 for n, s in shapes.items()} for lang in ("en", "fr")}


def test_mask_file_checksum_and_bits_are_those_of_earlier_files() -> None:
    """Values computed by the hand-written bit packing this module replaced: files saved
    before it (same format, version 1) keep their checksums and therefore still load."""
    from espnet_pathways.mask_file import mask_checksum

    masks = _fixed_masks()
    assert mask_checksum(masks) == "64dce242414c80f3a9733f52037937478c4438639526dfba109a2c1b5a6814a4"
    assert pack_bits(masks["en"]["b.weight"]).tolist() == [25, 15, 124, 46, 64, 128]


def test_mask_file_reads_a_version_1_payload_written_by_hand(tmp_path: Path) -> None:
    """The documented payload (as earlier code wrote it) loads through PathwayMasks.load."""
    from espnet_pathways.mask_file import FORMAT, mask_checksum

    masks = _fixed_masks()
    payload = {
        "format": FORMAT, "version": 1, "languages": ["en", "fr"], "meta": {"method": "old"},
        "shapes": {n: list(m.shape) for n, m in masks["en"].items()}, "masks": masks,
        "checksum": mask_checksum(masks),
    }
    torch.save(payload, tmp_path / "old.pth")
    pm = PathwayMasks.load(tmp_path / "old.pth")
    assert pm.languages == ["en", "fr"] and pm.meta == {"method": "old"}
    assert torch.equal(pm.for_language("fr")["b.weight"], masks["fr"]["b.weight"])
    payload["version"] = 2
    torch.save(payload, tmp_path / "new.pth")
    with pytest.raises(MaskFileError, match="unsupported espnet_pathways.masks version 2"):
        PathwayMasks.load(tmp_path / "new.pth")


def test_mask_file_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that fails half-way leaves the earlier complete file, and no temporary."""
    import espnet_pathways.mask_file as mask_file

    path = tmp_path / "masks.pth"
    PathwayMasks(_fixed_masks(), {"n": 1}).save(path)
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"half")  # mask files are saved through a buffer (atomic_torch_save)
        raise OSError("disk full")

    monkeypatch.setattr(mask_file.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        PathwayMasks(_fixed_masks(), {"n": 2}).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks.pth"]


def test_the_same_masks_saved_twice_are_the_same_bytes(tmp_path: Path) -> None:
    """The recipe's rerun check hashes the mask files a training starts from: a rerun of
    stage 9 that rewrites unchanged masks (through a new temporary name each time) must
    not make them look new, or every pathway system retrains (session 13's bug)."""
    first, second = tmp_path / "a" / "lsp_imp.pth", tmp_path / "b" / "masks.pth"
    PathwayMasks(_fixed_masks(), {"n": 1}).save(first)
    PathwayMasks(_fixed_masks(), {"n": 1}).save(second)
    PathwayMasks(_fixed_masks(), {"n": 1}).save(first)  # rewritten in place
    assert first.read_bytes() == second.read_bytes()
    PathwayMasks(_fixed_masks(), {"n": 2}).save(second)
    assert first.read_bytes() != second.read_bytes()
