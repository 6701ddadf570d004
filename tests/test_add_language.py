"""Adding a language (issue 12): the old languages' decoding stays bit-identical.

A tiny 4-language pathway model decodes fixed audio in every language; then Czech is
added (vocabulary grown, an all-ones pathway pruned by IMP on Czech, trained a few steps
through ESPnet's Trainer) in frozen mode, and the old languages' hypotheses AND scores
must be exactly those of before.  Shared mode (no freeze) must change them, or the frozen
test could not fail.  Masks, export, packing and the inference API know the new language.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import LANGS, TOKENS, tiny_args, tiny_model
from test_model import random_pathways
from training_runs import run_training

from espnet_pathways.add_language import (
    grow_state_dict,
    grow_token_list,
    restrict_output,
)
from espnet_pathways.masks import PathwayMasks, apply_masks_

NEW = "cs"
CS_CHARS = list("čřěšžýáíéůú")
OUTPUT_SCALE = 8.0  # sharper output: non-empty hypotheses to compare


def audio(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(12000) * 0.1).astype("float32")


def decode(exp: Path, lang: str, seeds=(1, 2)):
    from espnet_pathways.inference import PathwaySpeech2Text

    s2t = PathwaySpeech2Text(asr_train_config=str(exp / "config.yaml"),
                             asr_model_file=str(exp / "model.pth"), beam_size=3)
    out = []
    for seed in seeds:
        hyps = s2t(audio(seed), lang=lang)
        out.append([(list(h.yseq), float(h.score)) for h in hyps])
    return out


@pytest.fixture(scope="module")
def old_exp(tmp_path_factory):
    """The trained 4-language pathway model: config, weights, masks."""
    d = tmp_path_factory.mktemp("old")
    model = tiny_model()
    with torch.no_grad():
        model.joint_network.lin_out.weight.mul_(OUTPUT_SCALE)
    masks = random_pathways(model, sparsity=0.7)
    apply_masks_(model, masks.union())
    torch.save(model.state_dict(), d / "model.pth")
    masks.save(d / "masks.pth")
    cfg = dict(vars(tiny_args()))
    cfg["pathway_masks"] = str(d / "masks.pth")
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    return d


def add_czech(old: Path, out: Path, frozen: bool) -> Path:
    """bin.add_language's growth, then IMP + training on Czech only (4 steps)."""
    from espnet_pathways.bin.add_language import grow_model
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    info = grow_model(str(old / "config.yaml"), str(old / "model.pth"), None, NEW,
                      CS_CHARS, str(out / "init"))
    assert info["vocab_size_after"] == len(TOKENS) + len(CS_CHARS)
    cfg = yaml.safe_load((out / "init" / "config.yaml").read_text())
    args = tiny_args(**{k: cfg[k] for k in ("token_list", "languages", "model_conf")})
    torch.manual_seed(0)
    model = ASRPathwaysTask.build_model(args)
    model.load_state_dict(torch.load(out / "init" / "model.pth"))
    model.set_pathway_masks(PathwayMasks.load(out / "init" / "masks.pth"))
    cs = len(cfg["languages"]) - 1
    plan = [[[cs, cs]] * 4]  # Czech batches only
    (out / "train").mkdir()
    run_training(model, out / "train", plan, max_epoch=1, pruning="imp",
                 pruning_languages=[NEW], pruning_every=2, pruning_target_sparsity=0.5,
                 pruning_fraction=0.3, freeze_pathways=LANGS if frozen else [])
    exp = out / "exp"
    exp.mkdir()
    torch.save(model.state_dict(), exp / "model.pth")
    cfg["pathway_masks"] = str(out / "train" / "masks.pth")
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return exp


@pytest.fixture(scope="module")
def frozen_exp(old_exp, tmp_path_factory):
    return add_czech(old_exp, tmp_path_factory.mktemp("frozen"), frozen=True)


@pytest.fixture(scope="module")
def shared_exp(old_exp, tmp_path_factory):
    return add_czech(old_exp, tmp_path_factory.mktemp("shared"), frozen=False)


def test_growth_appends_tokens_and_rows():
    grown, added = grow_token_list(TOKENS, ["a", "č", "<unk>", "č", "ř"])
    assert grown[: len(TOKENS)] == TOKENS and added == ["č", "ř"]
    state = {"joint_network.lin_out.weight": torch.randn(len(TOKENS), 4),
             "joint_network.lin_out.bias": torch.randn(len(TOKENS)),
             "decoder.embed.weight": torch.randn(len(TOKENS), 3),
             "encoder.x.weight": torch.randn(5, 5)}
    new = grow_state_dict(state, len(TOKENS), len(grown))
    for k, v in state.items():
        assert torch.equal(new[k][: v.shape[0]], v)
    assert new["joint_network.lin_out.weight"].shape[0] == len(grown)
    assert torch.equal(new["decoder.embed.weight"][-1], state["decoder.embed.weight"][1])
    assert new["encoder.x.weight"] is state["encoder.x.weight"]
    cut = restrict_output(new, len(TOKENS))
    assert torch.equal(cut["joint_network.lin_out.bias"], state["joint_network.lin_out.bias"])


def test_frozen_mode_keeps_old_languages_bit_identical(old_exp, frozen_exp):
    """The key invariant: hypotheses and scores of every old language, exactly."""
    nonempty = 0
    for lang in LANGS:
        before, after = decode(old_exp, lang), decode(frozen_exp, lang)
        assert after == before, lang
        nonempty += sum(len(h[0][0]) > 1 for h in before)
    assert nonempty > 0  # something was actually recognised and compared


def test_frozen_mode_trained_the_new_pathway(old_exp, frozen_exp):
    masks = PathwayMasks.load(yaml.safe_load((frozen_exp / "config.yaml").read_text())["pathway_masks"])
    assert masks.languages == [*LANGS, NEW]
    assert masks.sparsity(NEW) == pytest.approx(0.5, abs=0.01)
    old = torch.load(old_exp / "model.pth")
    new = torch.load(frozen_exp / "model.pth")
    union = PathwayMasks.load(old_exp / "masks.pth").union()
    moved_outside = 0
    for name, w in old.items():
        if name in union:  # inside the old union: unchanged; outside: the new pathway's
            assert torch.equal(new[name][union[name]], w[union[name]]), name
            moved_outside += int((new[name][~union[name]] != w[~union[name]]).sum())
        elif new[name].shape != w.shape:  # grown: old rows unchanged, new rows trained
            assert torch.equal(new[name][: w.shape[0]], w), name
            assert not torch.equal(new[name][w.shape[0]:], new[name][1:2].expand_as(new[name][w.shape[0]:]))
        else:
            assert torch.equal(new[name], w), name
    assert moved_outside > 0
    hyps = decode(frozen_exp, NEW)  # the new language decodes through its own pathway
    assert hyps and all(h[0][1] != b[0][1] for h, b in zip(hyps, decode(frozen_exp, LANGS[0])))


def test_shared_mode_changes_old_languages(old_exp, shared_exp):
    """Without the freeze the new language writes shared weights: old outputs move."""
    assert any(decode(shared_exp, lang) != decode(old_exp, lang) for lang in LANGS)


def test_unknown_language_still_refused(frozen_exp):
    from espnet_pathways.inference import PathwaySpeech2Text
    from espnet_pathways.languages import UnknownLanguageError

    s2t = PathwaySpeech2Text(asr_train_config=str(frozen_exp / "config.yaml"),
                             asr_model_file=str(frozen_exp / "model.pth"), beam_size=3)
    assert s2t.known_languages == [*LANGS, NEW]
    with pytest.raises(UnknownLanguageError, match="cs"):
        s2t.set_language("de")


def test_export_and_pack_know_the_new_language(old_exp, frozen_exp, tmp_path):
    """export_pathway: an old language exports with its old vocabulary, exactly as before
    the growth; Czech with the grown one.  The packed zip decodes Czech."""
    from espnet2.bin.asr_transducer_inference import Speech2Text

    from espnet_pathways.bin.export_pathway import export_pathway
    from espnet_pathways.packing import pack_model, unpack_model
    from espnet_pathways.inference import PathwaySpeech2Text

    for lang in ("it", NEW):
        export_pathway(str(frozen_exp / "config.yaml"), str(frozen_exp / "model.pth"), lang,
                       str(tmp_path / f"export_{lang}"))
    export_pathway(str(old_exp / "config.yaml"), str(old_exp / "model.pth"), "it",
                   str(tmp_path / "export_it_before"))
    old_cfg = yaml.safe_load((tmp_path / "export_it_before/config.yaml").read_text())
    new_cfg = yaml.safe_load((tmp_path / "export_it/config.yaml").read_text())
    assert new_cfg["token_list"] == old_cfg["token_list"] == TOKENS
    a, b = torch.load(tmp_path / "export_it/model.pth"), torch.load(tmp_path / "export_it_before/model.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cs_cfg = yaml.safe_load((tmp_path / f"export_{NEW}/config.yaml").read_text())
    assert cs_cfg["token_list"][-len(CS_CHARS):] == CS_CHARS
    plain = Speech2Text(asr_train_config=str(tmp_path / f"export_{NEW}/config.yaml"),
                        asr_model_file=str(tmp_path / f"export_{NEW}/model.pth"), beam_size=3)
    ours = decode(frozen_exp, NEW, seeds=(1,))[0]
    theirs = [(list(h.yseq), float(h.score)) for h in plain(audio(1))]
    assert [y for y, _ in theirs] == [y for y, _ in ours]
    assert [s for _, s in theirs] == pytest.approx([s for _, s in ours], abs=1e-4)

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        packed = pack_model(str(frozen_exp / "config.yaml"), str(frozen_exp / "model.pth"),
                            "cs.zip", compact=True)
    finally:
        os.chdir(cwd)
    s2t = PathwaySpeech2Text(**unpack_model(packed["outpath"], cachedir=tmp_path / "c"),
                             beam_size=3)
    assert NEW in s2t.known_languages
    hyps = s2t(audio(1), lang=NEW)
    assert [(list(h.yseq), float(h.score)) for h in hyps] == ours


def test_adding_a_known_language_is_refused(old_exp, tmp_path):
    from espnet_pathways.bin.add_language import grow_model

    with pytest.raises(ValueError, match="already knows language 'it'"):
        grow_model(str(old_exp / "config.yaml"), str(old_exp / "model.pth"), None, "it",
                   CS_CHARS, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_results_section_is_replaced_not_repeated():
    from espnet_pathways.bin.add_language_results import replace_section

    text = "# Results\n\nbody\n"
    once = replace_section(text, NEW, "## Adding a language: cs\nv1\n")
    twice = replace_section(once + "\n## Later section\n", NEW, "## Adding a language: cs\nv2\n")
    assert once.startswith(text) and "v1" in once
    assert "v1" not in twice and twice.count("add_language:cs -->") == 2
    assert "## Later section" in twice
