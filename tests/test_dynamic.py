"""Dynamic ASR Pathways (espnet_pathways.dynamic): schedule, re-derivation inside the pool,
revival, the masked-update invariant while masks move, resume, and the final masks
decoding through the same code path as fixed pathways."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from helpers import LANGS, tiny_args, tiny_batch, tiny_model
from training_runs import run_training

from espnet_pathways.dynamic import DRIFT_FILE, DynamicSchedule, rederive_mask
from espnet_pathways.masks import PathwayMasks
from espnet_pathways.trainer import PathwayController

#: 3 epochs of 4 steps: re-derivations at steps 2, 4, 6, 8 and the freeze at 9 (0.75 x 12).
PLAN = [[[0, 1], [2, 2], [3, 0], [1, 3]]] * 3
DYNAMIC = dict(pruning="dynamic", pruning_every=2, pruning_fraction=0.3,
               pruning_target_sparsity=0.7, dynamic_start_sparsity=0.5,
               dynamic_freeze_fraction=0.75, max_epoch=3, num_iters_per_epoch=4)


def options(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path), resume=False, pruning="dynamic", pruning_languages=[],
        pruning_shared=False, pruning_target_sparsity=0.7, pruning_fraction=0.3,
        pruning_every=2, pruning_start=0, pruning_scope="global", pruning_exclude=[],
        lth_rewind_step=0, mask_updates=True, dynamic_score="taylor", dynamic_ema_decay=0.9,
        dynamic_start_sparsity=0.5, dynamic_freeze_fraction=0.75, max_epoch=1,
        num_iters_per_epoch=12,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def step(model, opt, langs, seed):
    loss, _, _ = model(**tiny_batch(langs, seed=seed))
    loss.sum().backward()
    opt.step()
    opt.zero_grad()


def snapshot(masks):
    return {lang: {n: m.clone() for n, m in masks.for_language(lang).items()}
            for lang in masks.languages}


def kept(mask):
    return sum(int(m.count_nonzero()) for m in mask.values())


def test_schedule_goes_geometrically_to_the_target_then_swaps_until_the_freeze():
    s = DynamicSchedule(start_sparsity=0.5, target_sparsity=0.7, fraction=0.3, every=2,
                        freeze_step=9)
    assert [k for k in range(1, 13) if s.due(k)] == [2, 4, 6, 8, 9]
    assert s.sparsity_at(2) == pytest.approx(1 - 0.5 * 0.7)
    assert [s.sparsity_at(k) for k in (4, 6, 8, 9)] == [0.7] * 4
    with pytest.raises(ValueError, match="start sparsity"):
        DynamicSchedule(start_sparsity=0.8, target_sparsity=0.7, fraction=0.3, every=2,
                        freeze_step=9)


def test_rederive_keeps_the_best_scores_inside_the_pool_and_lets_a_dropped_weight_back():
    pool = {"a": torch.tensor([True, True, True, False]), "b": torch.tensor([True, True])}
    first = rederive_mask({"a": torch.tensor([5.0, 1.0, 4.0, 9.0]), "b": torch.tensor([3.0, 2.0])},
                          pool, sparsity=0.5)
    # 3 of 6 removed: the weight outside the pool (score 9) counts as removed, not kept
    assert first["a"].tolist() == [True, False, True, False]
    assert first["b"].tolist() == [True, False]
    second = rederive_mask({"a": torch.tensor([5.0, 8.0, 0.5, 9.0]), "b": torch.tensor([3.0, 2.0])},
                           pool, sparsity=0.5)
    assert second["a"].tolist() == [True, True, False, False]  # index 1 came back


def test_masks_adapt_per_language_and_end_frozen_at_the_target(tmp_path):
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=0.1)
    controller = PathwayController(model, [opt], options(tmp_path))
    dyn = controller.dynamic
    pool = {n: m.clone() for n, m in dyn.pool.items()}
    start = snapshot(model.pathway_masks)
    assert all(model.pathway_masks.for_language(x) is not model.pathway_masks.for_language("en")
               for x in LANGS[1:])  # one mask object per language: one pass each
    history = []
    steps = [[0, 1], [2, 2], [3, 0], [1, 3], [2, 2], [0, 0], [1, 2], [3, 3], [2, 0],
             [1, 1], [3, 2], [0, 1]]
    for i, langs in enumerate(steps):
        masks = model.pathway_masks
        before = snapshot(masks)
        params = dict(model.named_parameters())
        old = {n: params[n].detach().clone() for n in masks.param_names}
        step(model, opt, langs, seed=i)
        if langs == [2, 2]:  # an Italian-only step: nothing outside its (pre-step) mask moved
            for n, m in before["it"].items():
                assert torch.equal(params[n][~m], old[n][~m]), (i, n)
        if dyn.schedule.due(i + 1):
            history.append(snapshot(model.pathway_masks))
    assert dyn.frozen and len(history) == 5
    total = model.pathway_masks.total_parameters()
    for lang in LANGS:
        # every re-derivation changed the mask; at the target, weights swapped
        for a, b in zip([start] + history, history):
            assert any(not torch.equal(a[lang][n], b[lang][n]) for n in a[lang]), lang
        assert abs(kept(history[-1][lang]) - round(0.3 * total)) <= 1, lang
        for n, m in history[-1][lang].items():
            assert not (m & ~pool[n]).any(), (lang, n)  # never outside the pool
    masks = model.pathway_masks
    assert masks.iou("en", "fr") < 1.0  # the masks became language-specific
    params = dict(model.named_parameters())
    union = masks.union()
    for n, u in union.items():  # after the freeze: ordinary pathways
        assert torch.all(params[n][~u] == 0), n
        assert torch.all(opt.state[params[n]]["exp_avg"][~u] == 0), n
    controller.close()
    saved = PathwayMasks.load(tmp_path / "masks.pth")
    assert saved.meta["method"] == "dynamic" and saved.meta["frozen_at"] == 9
    drift = json.loads((tmp_path / DRIFT_FILE).read_text())
    assert drift["start"]["en-fr"] == 1.0 and drift["end"]["en-fr"] < 1.0
    assert set(drift["changed_fraction"]) == set(LANGS)
    assert "encoder.block0" in drift["groups"] and "en-nl" in drift["groups"]["decoder"]["end"]


def test_a_dropped_weight_comes_back_with_its_current_value(tmp_path):
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    controller = PathwayController(model, [opt], options(tmp_path))
    dyn = controller.dynamic
    step(model, opt, [0, 1, 2, 3], seed=0)
    step(model, opt, [0, 1, 2, 3], seed=1)  # step 2: re-derived, English dropped weights
    en = model.pathway_masks.for_language("en")
    name = next(n for n in en if (dyn.pool[n] & ~en[n]).any())
    idx = (dyn.pool[name] & ~en[name]).reshape(-1).nonzero()[0, 0]
    value = dict(model.named_parameters())[name].detach().reshape(-1)[idx].clone()
    assert value != 0  # kept in the pool, not zeroed
    dyn.stats.ema["en"][name].reshape(-1)[idx] = 1e9  # English now needs it badly
    dyn.rederive(3)
    assert model.pathway_masks.for_language("en")[name].reshape(-1)[idx]
    assert dict(model.named_parameters())[name].detach().reshape(-1)[idx] == value
    assert dyn.revived["en"] > 0
    controller.close()


def test_start_from_given_masks_copies_them_per_language(tmp_path):
    model = tiny_model()
    lap = PathwayMasks.from_model_dense(model, LANGS)
    shared = {n: torch.rand_like(m, dtype=torch.float32) > 0.6 for n, m in lap.masks["en"].items()}
    model.set_pathway_masks(PathwayMasks({lang: shared for lang in LANGS}, {"method": "lap"}))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    controller = PathwayController(model, [opt], options(tmp_path))
    masks = model.pathway_masks
    assert masks.for_language("en") is not masks.for_language("fr")
    for n, m in shared.items():
        assert torch.equal(masks.for_language("it")[n], m)
        assert not (m & ~controller.dynamic.pool[n]).any()
    # the pool is larger than the LAP mask (the middle-sparsity mask): weights can move
    assert kept(controller.dynamic.pool) > kept(shared)
    controller.close()


class Crash(RuntimeError):
    pass


def test_resume_after_a_crash_equals_the_uninterrupted_run_and_decodes(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    ref.mkdir()
    run.mkdir()
    reference = tiny_model(seed=0)
    run_training(reference, ref, PLAN, **DYNAMIC)

    def crash(i, langs):  # epoch 2, after the re-derivation at step 6, before step 8
        if i == 3 and crashed.model.pathway_controller.step == 7:
            raise Crash()

    crashed = SimpleNamespace(model=tiny_model(seed=0))
    with pytest.raises(Crash):
        run_training(crashed.model, run, PLAN, check=crash, **DYNAMIC)
    state = torch.load(run / "checkpoint.pth", weights_only=False)
    assert state["optimizers"][0]["espnet_pathways"]["step"] == 4
    resumed = tiny_model(seed=1)  # everything must come from the checkpoint
    run_training(resumed, run, PLAN, resume=True, **DYNAMIC)
    want = dict(reference.named_parameters())
    for name, p in resumed.named_parameters():
        assert torch.equal(p, want[name]), name
    a, b = PathwayMasks.load(ref / "masks.pth"), PathwayMasks.load(run / "masks.pth")
    for lang in LANGS:
        for name, m in a.for_language(lang).items():
            assert torch.equal(m, b.for_language(lang)[name]), (lang, name)
    assert (ref / DRIFT_FILE).read_text() == (run / DRIFT_FILE).read_text()
    # the dynamic run is counted like every other training run (compute.json)
    for d in (ref, run):
        compute = json.loads((d / "compute.json").read_text())
        assert compute["steps"] == 12 and compute["steps_per_lang"]["it"] == 3, d

    # The final masks decode through the same code path as fixed pathways' masks.pth.
    from espnet_pathways.inference import PathwaySpeech2Text

    (ref / "config.yaml").write_text(yaml.safe_dump(dict(vars(tiny_args()))))
    s2t = PathwaySpeech2Text(asr_train_config=str(ref / "config.yaml"),
                             asr_model_file=str(ref / "latest.pth"), beam_size=2,
                             decoding_window=320, streaming=False,
                             pathway_masks=str(ref / "masks.pth"))
    params = dict(s2t.asr_model.named_parameters())
    speech = np.random.default_rng(0).standard_normal(12000).astype("float32") * 0.1
    for lang in ("it", "nl"):
        s2t.set_language(lang)
        for n, m in a.for_language(lang).items():
            assert torch.all(params[n][~m] == 0)
            assert torch.equal(params[n][m], want[n].detach()[m])
        assert isinstance(s2t.text(s2t(speech, lang=lang)), str)
    # ... and pack (compact: the union's weights) and export like them.
    from espnet_pathways.bin.export_pathway import export_pathway
    from espnet_pathways.packing import pack_model

    packed = pack_model(ref / "config.yaml", ref / "latest.pth", ref / "dynamic.zip",
                        pathway_masks=ref / "masks.pth", compact=True, root=ref)
    assert Path(packed["outpath"]).is_file()
    info = export_pathway(str(ref / "config.yaml"), str(ref / "latest.pth"), "it",
                          str(ref / "export_it"), pathway_masks=str(ref / "masks.pth"))
    assert info["sparsity"] == pytest.approx(a.sparsity("it"), abs=1e-6)


def test_bad_override_files_and_options_are_one_clear_error(tmp_path):
    from espnet_pathways.bin.dynamic_overrides import override_args

    good = tmp_path / "ok.yaml"
    good.write_text("pruning: dynamic\npruning_every: 5\ndynamic_score: grad\n")
    assert override_args(good) == ["--pruning", "dynamic", "--pruning_every", "5",
                                   "--dynamic_score", "grad"]
    for text, match in [("pruning: imp\n", "needs 'pruning: dynamic'"),
                        ("pruning: dynamic\nmax_epoch: 9\n", "'max_epoch' is not"),
                        ("pruning: [dynamic\n", "not valid YAML")]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=match) as err:
            override_args(bad)
        assert "bad.yaml" in str(err.value)

    model = tiny_model()
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="--num_iters_per_epoch"):
        PathwayController(model, [opt], options(tmp_path, num_iters_per_epoch=None))
    with pytest.raises(ValueError, match="--pruning_shared must be false"):
        PathwayController(model, [opt], options(tmp_path, pruning_shared=True))
    with pytest.raises(ValueError, match="--pruning_languages"):
        PathwayController(model, [opt], options(tmp_path, pruning_languages=["it"]))
    masks = PathwayMasks.from_model_dense(model, ["en", "fr"])
    masks.source = "lap/masks.pth"
    model.set_pathway_masks(masks)
    with pytest.raises(ValueError, match=r"lap/masks.pth.*\['it', 'nl'\]"):
        PathwayController(model, [opt], options(tmp_path))


@pytest.mark.parametrize("case", ["missing", "empty", "garbled", "not_a_mapping", "number_key"])
def test_dynamic_overrides_bad_file_is_one_line_naming_it(tmp_path, capsys, case):
    from helpers import fails

    from espnet_pathways.bin.dynamic_overrides import main

    path = tmp_path / "dyn.yaml"
    text = {"missing": None, "empty": "", "garbled": "pruning: dynamic\n  bad: [\n",
            "not_a_mapping": "- pruning\n- dynamic\n",
            "number_key": "pruning: dynamic\n5: 3\n"}[case]
    if text is not None:
        path.write_text(text)
    line = fails(main, [str(path)], capsys)
    assert line.startswith(f"dynamic_overrides: error: {path}: "), line
    expected = {"missing": "not found", "empty": "not a YAML mapping",
                "garbled": "not valid YAML at line 2", "not_a_mapping": "not a YAML mapping",
                "number_key": "5 is not a --pruning_*"}[case]
    assert expected in line, line
