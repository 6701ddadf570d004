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
        lth_rewind_step=0, random_layer_sparsity_from=None, mask_updates=True,
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


# ------------------------------------------------------------------ scale-up behaviours
def reference_guard_hooks(model, opt):
    """The straightforward masked update (the implementation before the index guard):
    clone every masked weight and its Adam moments before the step, put back with
    torch.where every element that the step's languages do not own."""
    saved = {}

    def pre(optimizer, args, kwargs):
        saved.clear()
        langs = sorted(model.step_languages)
        masks = model.pathway_masks
        params = dict(model.named_parameters())
        for n in masks.param_names:
            owned = masks.for_language(langs[0])[n].clone()
            for lang in langs[1:]:
                owned |= masks.for_language(lang)[n]
            p = params[n]
            state = {k: v.clone() for k, v in opt.state.get(p, {}).items()
                     if torch.is_tensor(v) and v.shape == p.shape}
            saved[n] = (p, owned, p.detach().clone(), state)

    def post(optimizer, args, kwargs):
        with torch.no_grad():
            for p, owned, value, state in saved.values():
                p.copy_(torch.where(owned, p, value))
                for k, v in opt.state[p].items():
                    if torch.is_tensor(v) and v.shape == p.shape:
                        v.copy_(torch.where(owned, v, state.get(k, torch.zeros_like(v))))

    return opt.register_step_pre_hook(pre), opt.register_step_post_hook(post)


@pytest.mark.parametrize("system", ["pathways", "imp"])
def test_index_guard_gives_bit_identical_weights_to_the_reference(tmp_path, system):
    from espnet_pathways.masks import apply_masks_

    runs = []
    for use_reference in (False, True):
        model = tiny_model()
        kw = {}
        if system == "pathways":
            model.set_pathway_masks(random_pathways(model, sparsity=0.6))
            steps = [[0, 1, 2, 3], [2, 2], [0, 3], [1, 1], [3, 1, 2], [0, 0]]
        else:
            kw = dict(pruning="imp", pruning_languages=["fr"], pruning_every=2,
                      pruning_fraction=0.3, pruning_target_sparsity=0.6)
            steps = [[1, 1]] * 6
        opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=0.1)
        if use_reference:
            reference_guard_hooks(model, opt)  # registered on opt for this run
            controller = PathwayController(model, [opt], options(tmp_path, mask_updates=False, **kw))
            # the old pruning step: zero the pruned weights only (not their Adam moments)
            controller._zero_outside_union = lambda c=controller, m=model: apply_masks_(m, c.union())
        else:
            controller = PathwayController(model, [opt], options(tmp_path, **kw))
        history = []
        for i, langs in enumerate(steps):
            train_steps(model, opt, [langs], seed=10 + i)
            history.append({n: p.detach().clone() for n, p in model.named_parameters()})
        controller.close()
        runs.append(history)
    for step, (new, ref) in enumerate(zip(*runs)):
        for n in ref:
            assert torch.equal(new[n], ref[n]), (system, step, n)


def test_a_step_espnet_skips_does_not_own_the_next_update(tmp_path):
    """A batch with an inf sample: ESPnet skips optimizer.step(); the next update (English
    only) must not move Italian-only weights, though Italian was in the skipped batch."""
    from training_runs import run_training

    model = tiny_model()
    masks = random_pathways(model, sparsity=0.6)
    model.set_pathway_masks(masks)
    seen = {}

    def check(i, langs):
        params = dict(model.named_parameters())
        if i == 0:  # before the Italian batch that will be skipped
            seen["before"] = {n: params[n].detach().clone() for n in masks.param_names}
        if i == 2:  # after the skipped step and one English step
            seen["step"] = model.pathway_controller.step
            seen["after"] = {n: params[n].detach().clone() for n in masks.param_names}

    run_training(model, tmp_path, [[[2, 2], [0, 0]]], check=check, nonfinite=[(1, 0)],
                 max_epoch=1)
    assert seen["step"] == 1  # one real update: the Italian step was skipped
    it, en = masks.for_language("it"), masks.for_language("en")
    for n in masks.param_names:
        italian_only = it[n] & ~en[n]
        assert torch.equal(seen["after"][n][italian_only], seen["before"][n][italian_only]), n
    assert any((seen["after"][n][en[n]] != seen["before"][n][en[n]]).any() for n in en)


def test_lth_rewinds_every_parameter_and_resets_adam_and_the_lr_schedule(tmp_path):
    from espnet2.schedulers.warmup_lr import WarmupLR

    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = WarmupLR(opt, warmup_steps=5)
    fresh_lrs = []
    probe = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    probe_sched = WarmupLR(probe, warmup_steps=5)
    for _ in range(2):
        fresh_lrs.append(probe.param_groups[0]["lr"])
        probe_sched.step()
    controller = PathwayController(
        model, [opt], options(tmp_path, pruning="lth", pruning_languages=["en"],
                              pruning_target_sparsity=0.5, pruning_fraction=0.5,
                              pruning_every=3, lth_rewind_step=1), schedulers=[sched])

    def espnet_step(langs, seed):  # ESPnet: optimizer.step() then the batch scheduler
        train_steps(model, opt, [langs], seed=seed)
        sched.step()

    espnet_step([0, 0], 0)  # step 1: the rewind point
    rewind = {n: w.clone() for n, w in controller.rewind_state.items()}
    assert set(rewind) == {n for n, _ in model.named_parameters()}
    espnet_step([0, 0], 1)
    espnet_step([0, 0], 2)  # step 3: prune, rewind, reset
    m = model.pathway_masks.for_language("en")
    unmasked = [n for n, _ in model.named_parameters() if n not in m]
    assert any("joint_network.lin_out" in n for n in unmasked)
    for n, p in model.named_parameters():
        want = rewind[n] * m[n] if n in m else rewind[n]
        assert torch.equal(p, want), n
    assert len(opt.state) == 0  # fresh Adam moments
    assert opt.param_groups[0]["lr"] == pytest.approx(fresh_lrs[0])  # the schedule restarts
    espnet_step([0, 0], 3)
    assert opt.param_groups[0]["lr"] == pytest.approx(fresh_lrs[1])
    controller.close()


def test_random_pruning_reaches_the_target_with_nested_language_specific_masks(tmp_path):
    """--pruning random (trained random-mask pathways): each language's mask is pruned on
    the IMP schedule by its own fixed random scores, not by the weights' magnitudes."""
    from espnet_pathways.pruning import magnitude_prune

    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    controller = PathwayController(
        model, [opt], options(tmp_path, pruning="random", pruning_target_sparsity=0.7,
                              pruning_fraction=0.5, pruning_every=2))
    train_steps(model, opt, [[0, 1]] * 2)  # round 1 (0.5)
    masks = model.pathway_masks
    first = {lang: {n: m.clone() for n, m in masks.for_language(lang).items()} for lang in LANGS}
    train_steps(model, opt, [[2, 3]] * 2, seed=7)  # round 2 (0.7)
    params = dict(model.named_parameters())
    weights = {n: params[n].detach() for n in masks.param_names}
    by_magnitude = magnitude_prune(weights, 0.7)
    for lang in LANGS:
        assert masks.sparsity(lang) == pytest.approx(0.7, abs=1e-3)
        for n, m in masks.for_language(lang).items():
            assert not (m & ~first[lang][n]).any(), (lang, n)  # nested: no weight revived
    assert masks.iou("en", "fr") < 0.5  # independent draws (random pairs: ~0.18)
    kept = sum(int((masks.for_language("en")[n] & by_magnitude[n]).sum()) for n in weights)
    assert kept / masks.kept_parameters("en") < 0.5  # not the magnitude ranking
    controller.close()
    from espnet_pathways.masks import PathwayMasks

    assert PathwayMasks.load(tmp_path / "masks.pth").meta["method"] == "random"


def test_random_pruning_can_take_the_layer_sparsity_of_reference_masks(tmp_path):
    """--random_layer_sparsity_from: each language's random mask has, tensor by tensor,
    the sparsity of that language's reference mask (the LSP masks in the recipe), at
    other positions; a reference without a language or for another model is refused."""
    from espnet_pathways.masks import PathwayMasks, prunable_parameter_names
    from espnet_pathways.pruning import magnitude_prune

    model = tiny_model()
    names = prunable_parameter_names(model)
    params = dict(model.named_parameters())
    # A reference far from uniform: magnitude pruning of per-language scaled weights.
    torch.manual_seed(0)
    ref = {}
    for i, lang in enumerate(LANGS):
        scaled = {n: params[n].detach() * (1 + k * (i + 1)) for k, n in enumerate(names)}
        ref[lang] = magnitude_prune(scaled, 0.7)
    ref_path = tmp_path / "ref" / "masks.pth"
    ref_path.parent.mkdir()
    PathwayMasks(ref).save(ref_path)
    reference = PathwayMasks.load(ref_path)

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    controller = PathwayController(
        model, [opt], options(tmp_path, pruning="random", pruning_target_sparsity=0.7,
                              pruning_fraction=0.5, pruning_every=2,
                              random_layer_sparsity_from=str(ref_path)))
    train_steps(model, opt, [[0, 1, 2, 3]] * 4)  # two rounds: 0.5, then 0.7
    masks = model.pathway_masks
    for lang in LANGS:
        for n, m in masks.for_language(lang).items():
            assert int((~m).sum()) == int((~reference.for_language(lang)[n]).sum()), (lang, n)
        assert masks.iou(lang, lang) == 1.0
    assert reference.layer_sparsity("en") != reference.layer_sparsity("it")
    assert masks.layer_sparsity("en") == pytest.approx(reference.layer_sparsity("en"))
    same = sum(int((masks.for_language("en")[n] & reference.for_language("en")[n]).sum())
               for n in names)
    assert same / masks.kept_parameters("en") < 0.6  # random positions, not the reference's
    controller.close()
    assert PathwayMasks.load(tmp_path / "masks.pth").meta["random_layer_sparsity_from"] == \
        str(ref_path)

    PathwayMasks({"en": ref["en"]}).save(ref_path)
    with pytest.raises(ValueError, match=r"no mask for language\(s\) \['fr', 'it', 'nl'\]"):
        PathwayController(tiny_model(), [], options(
            tmp_path, pruning="random", random_layer_sparsity_from=str(ref_path)))
    for other in ("imp", "none", "dynamic"):  # refused, never silently ignored
        with pytest.raises(ValueError, match=f"is for --pruning random, not --pruning {other}"):
            PathwayController(tiny_model(), [], options(
                tmp_path, pruning=other, random_layer_sparsity_from=str(ref_path)))
