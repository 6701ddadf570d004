"""PathwayController (the trainer's hooks): masked Adam updates, IMP, LTH, union zeros."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from helpers import LANGS, tiny_batch, tiny_model
from test_model import random_pathways

from espnet_pathways.trainer import PathwayController


def options(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path), resume=False, pruning="none", pruning_languages=[],
        pruning_shared=False, pruning_target_sparsity=0.7, pruning_fraction=0.5,
        pruning_every=2, pruning_start=0, pruning_scope="global", pruning_exclude=[],
        lth_rewind_step=0, mask_updates=True,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def train_steps(model, opt, langs_per_step, seed=0):
    for i, langs in enumerate(langs_per_step):
        loss, _, _ = model(**tiny_batch(langs, seed=seed + i))
        loss.sum().backward()
        opt.step()
        opt.zero_grad()


def test_adam_step_leaves_weights_owned_only_by_other_languages_unchanged(tmp_path):
    model = tiny_model()
    masks = random_pathways(model, sparsity=0.6)
    model.set_pathway_masks(masks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=0.1)
    controller = PathwayController(model, [opt], options(tmp_path))
    # Warm the optimizer state with all languages, then step on Italian only.
    train_steps(model, opt, [[0, 1, 2, 3]])
    params = dict(model.named_parameters())
    before = {n: params[n].detach().clone() for n in masks.param_names}
    state_before = {n: opt.state[params[n]]["exp_avg"].clone() for n in masks.param_names}
    train_steps(model, opt, [[2, 2]], seed=5)
    it = masks.for_language("it")
    for n in masks.param_names:
        others_only = ~it[n]
        assert torch.equal(params[n][others_only], before[n][others_only]), n
        assert torch.equal(opt.state[params[n]]["exp_avg"][others_only],
                           state_before[n][others_only]), n
        assert not torch.equal(params[n][it[n]], before[n][it[n]]), n
    controller.close()


def test_weights_outside_the_union_start_and_stay_zero(tmp_path):
    model = tiny_model()
    masks = random_pathways(model, sparsity=0.8)
    model.set_pathway_masks(masks)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    controller = PathwayController(model, [opt], options(tmp_path))
    train_steps(model, opt, [[0, 1], [2, 3], [0, 3]])
    params = dict(model.named_parameters())
    union = masks.union()
    assert any((~u).any() for u in union.values())
    for n, u in union.items():
        assert torch.all(params[n][~u] == 0), n
    controller.close()


def test_imp_reaches_target_sparsity_and_saves_masks(tmp_path):
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    controller = PathwayController(
        model, [opt], options(tmp_path, pruning="imp", pruning_languages=["fr"],
                              pruning_target_sparsity=0.7, pruning_fraction=0.5,
                              pruning_every=2))
    assert controller.schedule.num_rounds == 2
    train_steps(model, opt, [[1, 1]] * 4)
    masks = model.pathway_masks
    assert masks.languages == ["fr"]
    total = sum(m.numel() for m in masks.for_language("fr").values())
    assert abs(masks.sparsity("fr") * total - round(0.7 * total)) <= 1
    params = dict(model.named_parameters())
    for n, m in masks.for_language("fr").items():
        assert torch.all(params[n][~m] == 0), n
    controller.close()
    from espnet_pathways.masks import PathwayMasks

    saved = PathwayMasks.load(tmp_path / "masks.pth")
    assert saved.meta["method"] == "imp" and saved.meta["step"] == 4
    assert abs(saved.sparsity("fr") - masks.sparsity("fr")) < 1e-9


def test_lth_rewinds_survivors_to_the_saved_weights(tmp_path):
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    controller = PathwayController(
        model, [opt], options(tmp_path, pruning="lth", pruning_languages=["en"],
                              pruning_target_sparsity=0.5, pruning_fraction=0.5,
                              pruning_every=3, lth_rewind_step=1))
    train_steps(model, opt, [[0, 0]])  # step 1: the rewind point
    rewind = {n: w.clone() for n, w in controller.rewind_state.items()}
    train_steps(model, opt, [[0, 0]] * 2, seed=3)  # step 3: prune + rewind
    params = dict(model.named_parameters())
    m = model.pathway_masks.for_language("en")
    for n in m:
        assert torch.equal(params[n][m[n]], rewind[n][m[n]]), n
        assert torch.all(params[n][~m[n]] == 0), n
    controller.close()


def test_lap_prunes_one_shared_mask(tmp_path):
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    controller = PathwayController(
        model, [opt], options(tmp_path, pruning="imp", pruning_shared=True,
                              pruning_target_sparsity=0.5, pruning_fraction=0.5,
                              pruning_every=1))
    train_steps(model, opt, [[0, 1, 2, 3]])
    masks = model.pathway_masks
    assert masks.languages == LANGS
    for lang in LANGS[1:]:
        assert masks.for_language(lang) is masks.for_language("en")
    assert masks.sparsity("it") == pytest.approx(0.5, abs=1e-3)
    controller.close()


def test_unknown_pruning_language_is_rejected(tmp_path):
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="not in --languages"):
        PathwayController(model, [opt], options(tmp_path, pruning="imp", pruning_languages=["de"]))
