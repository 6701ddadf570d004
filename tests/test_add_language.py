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
    fill_free_weights,
    grow_state_dict,
    grow_token_list,
    restrict_output,
    token_row_sources,
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


@pytest.fixture(scope="module")
def dense_file(tmp_path_factory):
    """The "dense model" the free weights start from: other weights, no zeros."""
    d = tmp_path_factory.mktemp("dense")
    torch.save(tiny_model(seed=7).state_dict(), d / "dense.pth")
    return d / "dense.pth"


def czech_loss(model, steps: int) -> float:
    """Mean loss of ``model`` on the Czech training batches of :func:`add_czech`."""
    from helpers import tiny_batch

    cs = len(model.languages) - 1
    model.eval()
    with torch.no_grad():
        losses = [float(model(**tiny_batch([cs, cs], seed=1000 + i))[0]) for i in range(steps)]
    model.train()
    return sum(losses) / len(losses)


def add_czech(old: Path, out: Path, frozen: bool, dense: Path = None, shared_from: str = None,
              steps: int = 4, losses: list = None) -> Path:
    """bin.add_language's growth, then IMP + training on Czech only (``steps`` steps)."""
    from espnet_pathways.bin.add_language import grow_model
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    info = grow_model(str(old / "config.yaml"), str(old / "model.pth"), None, NEW,
                      CS_CHARS, str(out / "init"), init_free_from=dense and str(dense),
                      shared_from=shared_from)
    assert info["vocab_size_after"] == len(TOKENS) + len(CS_CHARS)
    cfg = yaml.safe_load((out / "init" / "config.yaml").read_text())
    args = tiny_args(**{k: cfg[k] for k in ("token_list", "languages", "model_conf")})
    torch.manual_seed(0)
    model = ASRPathwaysTask.build_model(args)
    model.load_state_dict(torch.load(out / "init" / "model.pth"))
    model.set_pathway_masks(PathwayMasks.load(out / "init" / "masks.pth"))
    cs = len(cfg["languages"]) - 1
    plan = [[[cs, cs]] * steps]  # Czech batches only
    (out / "train").mkdir()
    if losses is not None:
        losses.append(czech_loss(model, steps))
    run_training(model, out / "train", plan, max_epoch=1, pruning="imp",
                 pruning_languages=[NEW], pruning_every=2, pruning_target_sparsity=0.5,
                 pruning_fraction=0.3, freeze_pathways=LANGS if frozen else [])
    if losses is not None:
        losses.append(czech_loss(model, steps))
    exp = out / "exp"
    exp.mkdir()
    torch.save(model.state_dict(), exp / "model.pth")
    cfg["pathway_masks"] = str(out / "train" / "masks.pth")
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return exp


@pytest.fixture(scope="module")
def frozen_exp(old_exp, dense_file, tmp_path_factory):
    """The recipe's default: free weights from the dense model, all-ones start mask."""
    return add_czech(old_exp, tmp_path_factory.mktemp("frozen"), frozen=True, dense=dense_file)


@pytest.fixture(scope="module")
def frozen_nl(old_exp, dense_file, tmp_path_factory):
    """Frozen, the new pathway started from Dutch's; (exp dir, Czech loss before/after)."""
    losses = []
    exp = add_czech(old_exp, tmp_path_factory.mktemp("frozen_nl"), frozen=True,
                    dense=dense_file, shared_from="nl", steps=8, losses=losses)
    return exp, losses


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


@pytest.mark.parametrize("start", ["all-ones", "from nl"])
def test_frozen_mode_keeps_old_languages_bit_identical(old_exp, frozen_exp, frozen_nl, start):
    """The key invariant: hypotheses and scores of every old language, exactly."""
    exp = frozen_exp if start == "all-ones" else frozen_nl[0]
    nonempty = 0
    for lang in LANGS:
        before, after = decode(old_exp, lang), decode(exp, lang)
        assert after == before, lang
        nonempty += sum(len(h[0][0]) > 1 for h in before)
    assert nonempty > 0  # something was actually recognised and compared


def test_frozen_mode_trained_the_new_pathway(old_exp, frozen_exp):
    masks = PathwayMasks.load(yaml.safe_load((frozen_exp / "config.yaml").read_text())["pathway_masks"])
    assert masks.languages == [*LANGS, NEW]
    union = PathwayMasks.load(old_exp / "masks.pth").union()
    cs = masks.for_language(NEW)
    total = sum(m.numel() for m in union.values())
    inside = sum(int(union[n].sum()) for n in union)
    # reads as many shared weights as one pathway holds (target 0.5) or the whole union,
    # writes half of the free weights
    assert sum(int((cs[n] & union[n]).sum()) for n in union) == pytest.approx(
        min(0.5 * total, inside), rel=0.01)
    assert sum(int((cs[n] & ~union[n]).sum()) for n in union) == pytest.approx(
        0.5 * (total - inside), rel=0.01)
    old = torch.load(old_exp / "model.pth")
    new = torch.load(frozen_exp / "model.pth")
    init = torch.load(frozen_exp.parent / "init" / "model.pth")
    union = PathwayMasks.load(old_exp / "masks.pth").union()
    moved_outside = 0
    for name, w in old.items():
        if name in union:  # inside the old union: unchanged; outside: the new pathway's
            assert torch.equal(new[name][union[name]], w[union[name]]), name
            out = ~union[name] & masks.for_language(NEW)[name]
            moved_outside += int((new[name][out] != init[name][out]).sum())
        elif new[name].shape != w.shape:  # grown: old rows unchanged, new rows trained
            assert torch.equal(new[name][: w.shape[0]], w), name
            assert not torch.equal(new[name][w.shape[0]:], new[name][1:2].expand_as(new[name][w.shape[0]:]))
        else:
            assert torch.equal(new[name], w), name
    assert moved_outside > 0
    hyps = decode(frozen_exp, NEW)  # the new language decodes through its own pathway
    assert hyps and all(h[0][1] != b[0][1] for h, b in zip(hyps, decode(frozen_exp, LANGS[0])))


def test_free_weights_start_from_the_dense_model(old_exp, dense_file, frozen_exp):
    """Outside the old union the grown model holds the dense model's values (not the
    pathway model's zeros); inside it, the pathway model's, bit for bit."""
    old = torch.load(old_exp / "model.pth")
    dense = torch.load(dense_file)
    grown = torch.load(frozen_exp.parent / "init" / "model.pth")
    union = PathwayMasks.load(old_exp / "masks.pth").union()
    for name, keep in union.items():
        assert not old[name][~keep].any(), name  # the trained pathway model: zeros there
        assert torch.equal(grown[name][~keep], dense[name][~keep]), name
        assert torch.equal(grown[name][keep], old[name][keep]), name
    info = yaml.safe_load((frozen_exp.parent / "init" / "add_language.yaml").read_text())
    assert info["free_weights_from"] == str(dense_file)
    masks = PathwayMasks.load(old_exp / "masks.pth")
    with pytest.raises(ValueError, match="shape"):
        fill_free_weights(old, masks, {n: v[:1] if v.dim() else v for n, v in dense.items()})


def test_new_rows_start_from_the_letter_without_diacritics():
    grown, added = grow_token_list(TOKENS, ["č", "ř", "ů", "Ž", "ß"])
    src = token_row_sources(TOKENS, added)
    assert [TOKENS[i] for i in src] == ["c", "r", "u", "z", "<unk>"]
    state = {"joint_network.lin_out.weight": torch.randn(len(TOKENS), 4)}
    new = grow_state_dict(state, len(TOKENS), len(grown), src)
    assert torch.equal(new["joint_network.lin_out.weight"][len(TOKENS)],
                       state["joint_network.lin_out.weight"][TOKENS.index("c")])
    with pytest.raises(ValueError, match="one old row"):
        grow_state_dict(state, len(TOKENS), len(grown), src[:-1])


def test_pathway_started_from_nl_keeps_it_and_learns(old_exp, frozen_nl):
    """Started from Dutch's pathway: its shared part is exactly Dutch's (IMP prunes only
    the free weights), and 8 frozen steps on Czech lower the Czech loss."""
    exp, (before, after) = frozen_nl
    old = PathwayMasks.load(old_exp / "masks.pth")
    union = old.union()
    new = PathwayMasks.load(yaml.safe_load((exp / "config.yaml").read_text())["pathway_masks"])
    assert new.meta["shared_from"] == "nl"
    free_kept = free = 0
    for name, m in new.for_language(NEW).items():
        assert torch.equal(m & union[name], old.for_language("nl")[name]), name
        free_kept += int((m & ~union[name]).sum())
        free += int((~union[name]).sum())
    assert free_kept / free == pytest.approx(0.5, abs=0.02)  # the target, free region
    assert after < before, (before, after)


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


def test_rewriting_results_md_keeps_the_added_languages_sections():
    """Stage 13 rewrites RESULTS.md; the sections stage 21 added (cs, pl) stay, once."""
    from espnet_pathways.bin.add_language_results import replace_section
    from espnet_pathways.reporting.results import carry_add_language_sections

    old = replace_section(replace_section("# Results\n\nold body\n", NEW, "## cs\nc1\n"),
                          "pl", "## pl\np1\n")
    new = carry_add_language_sections(old, "# Results\n\nnew body\n")
    assert "old body" not in new and new.startswith("# Results\n\nnew body\n")
    assert "c1" in new and "p1" in new and new.count("<!-- add_language:cs -->") == 1
    assert carry_add_language_sections(new, new) == new  # already there: not repeated
    assert carry_add_language_sections("# Results\n", "# R\n") == "# R\n"


def test_report_skips_old_languages_not_redecoded(tmp_path):
    """Stage 21 re-decodes the old languages in shared mode only when asked: the report
    then lists shared mode as not re-decoded instead of a table of n/a."""
    import json

    from espnet_pathways.bin.add_language_results import build_report

    def scored(exp: Path, lang: str, rate: float, text: str) -> None:
        d = exp / "decode" / f"test_{lang}"
        for sub in ("score_cer", "score_wer"):
            (d / sub).mkdir(parents=True)
            (d / sub / "score.json").write_text(json.dumps(
                {"n_utt": 1, "n_ref": 10, "sub": 1, "del": 0, "ins": 0, "error_rate": rate,
                 "missing": 0}))
        (d / "text").write_text(text)

    before, frozen, shared, grown = (tmp_path / n for n in ("before", "frozen", "shared", "g"))
    grown.mkdir()
    (grown / "add_language.yaml").write_text(yaml.safe_dump(
        {"added_tokens": CS_CHARS, "vocab_size_before": 30, "vocab_size_after": 41,
         "added_parameters": 100}))
    for exp in (before, frozen):
        scored(exp, "en", 50.0, "u1 a b\n")
    scored(frozen, NEW, 40.0, "u1 č\n")
    scored(shared, NEW, 30.0, "u1 č\n")
    from espnet_pathways.masks import PathwayMasks

    keep = {"en": [0, 1, 2], NEW: [0, 3, 4]}  # of 10 weights: cs writes 2, sparsity 0.7
    PathwayMasks({lang: {"w": torch.isin(torch.arange(10), torch.tensor(ix))}
                  for lang, ix in keep.items()}).save(frozen / "masks.pth")
    (frozen / "config.yaml").write_text(yaml.safe_dump(  # steps and lr from the run's config
        {"num_iters_per_epoch": 100, "max_epoch": 2, "optim_conf": {"lr": 0.004}}))
    report = build_report(NEW, ["en"], before, {"frozen": frozen, "shared": shared}, None,
                          grown, "decode")
    assert "| frozen | 40.0 | 40.0 | 200 | 0.004 | 102 | 0.70 |" in report  # 100 rows + 2 weights
    assert "| shared | 30.0 | 30.0 | n/a | n/a | 100 | n/a |" in report  # no config, no masks
    assert "| frozen | en | 50.0 | 50.0 | 50.0 | 50.0 | yes |" in report
    assert "| shared | en |" not in report
    assert "Not re-decoded on the old languages: shared" in report
    scratch = tmp_path / "scratch"  # the from-scratch baseline: a dense row of its own
    scored(scratch, NEW, 90.0, "u1 x\n")
    report2 = build_report(NEW, ["en"], before, {"frozen": frozen}, None, grown, "decode",
                           scratch=scratch)
    assert f"| dense on {NEW} alone, from scratch (baseline) | 90.0 | 90.0 | n/a | n/a | n/a | " \
        "0 (dense) |" in report2


def test_free_weights_from_a_model_with_the_old_vocabulary():
    """The dense model has the old vocabulary: a pruned vocabulary-sized weight (the CTC
    head) takes its old rows' free positions from it and keeps its appended rows."""
    from espnet_pathways.masks import PathwayMasks

    old_rows, new_rows = 4, 6
    keep = torch.zeros(new_rows, 3, dtype=torch.bool)
    keep[:2] = True  # the union: the first two rows
    masks = PathwayMasks({"en": {"ctc_lin.weight": keep}})
    state = {"ctc_lin.weight": torch.arange(new_rows * 3, dtype=torch.float).view(new_rows, 3)}
    dense = {"ctc_lin.weight": -torch.ones(old_rows, 3)}
    out = fill_free_weights(state, masks, dense)["ctc_lin.weight"]
    old_masks = PathwayMasks({"en": {"ctc_lin.weight": keep[:old_rows]}})  # before growth
    assert torch.equal(fill_free_weights(state, old_masks, dense)["ctc_lin.weight"], out)
    assert torch.equal(out[:2], state["ctc_lin.weight"][:2])  # inside the union
    assert torch.equal(out[2:old_rows], dense["ctc_lin.weight"][2:])  # free, old rows
    assert torch.equal(out[old_rows:], state["ctc_lin.weight"][old_rows:])  # appended rows


# ------------------------------------------------------------------ bad input to the bins
def _cs_text(path: Path, chars) -> Path:
    path.write_text("".join(f"cs-{i} {c}{c}\n" for i, c in enumerate(chars)), encoding="utf-8")
    return path


@pytest.mark.parametrize("case", ["missing_config", "garbled_config", "missing_text",
                                  "truncated_model", "unknown_shared_from", "garbled_train_config",
                                  "missing_free_model", "known_language"])
def test_add_language_bad_input_keeps_the_earlier_output(old_exp, tmp_path, capsys, case):
    """A failing rerun of bin.add_language: one line naming the file or language, and the
    earlier grown model (every file in out_dir) byte-identical, although the rerun would
    have grown other tokens (its text has one character more)."""
    from helpers import fails, snapshot_files

    from espnet_pathways.bin.add_language import main

    out = tmp_path / "init"
    train_yaml = tmp_path / "train.yaml"
    train_yaml.write_text("max_epoch: 1\n")
    base = ["--asr_train_config", str(old_exp / "config.yaml"),
            "--asr_model_file", str(old_exp / "model.pth"), "--lang", NEW,
            "--out_dir", str(out), "--train_config", str(train_yaml)]
    main(base + ["--text", str(_cs_text(tmp_path / "text", CS_CHARS[:5]))])
    before = snapshot_files(out)
    argv = base + ["--text", str(_cs_text(tmp_path / "text2", CS_CHARS[:6]))]

    def replace(flag: str, value: str) -> None:
        argv[argv.index(flag) + 1] = value

    if case == "missing_config":
        culprit, why = tmp_path / "none.yaml", "training config not found"
        replace("--asr_train_config", str(culprit))
    elif case == "garbled_config":
        culprit, why = tmp_path / "bad.yaml", "not valid YAML at line 2"
        culprit.write_text("token_list: [a, b\nlanguages: [en\n")
        replace("--asr_train_config", str(culprit))
    elif case == "missing_text":
        culprit, why = tmp_path / "text3", "not found"
        replace("--text", str(culprit))
    elif case == "truncated_model":
        culprit, why = tmp_path / "model.pth", "cannot read"
        culprit.write_bytes((old_exp / "model.pth").read_bytes()[:1000])
        replace("--asr_model_file", str(culprit))
    elif case == "unknown_shared_from":
        culprit, why = "--shared_from 'de'", "unknown language"
        argv += ["--shared_from", "de"]
    elif case == "garbled_train_config":
        culprit, why = train_yaml, "not valid YAML"
        train_yaml.write_text("max_epoch: [1\n")
    elif case == "missing_free_model":
        culprit, why = tmp_path / "dense.pth", "not found"
        argv += ["--init_free_from", str(culprit)]
    else:
        culprit, why = old_exp / "config.yaml", "already knows language 'it'"
        replace("--lang", "it")
    line = fails(main, argv, capsys)
    assert line.startswith(f"add_language: error: {culprit}") and why in line, line
    assert snapshot_files(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".init.")]  # no staging left


def test_add_language_segment_dirs_must_be_the_new_language(tmp_path):
    """--segment dirs are checked before anything is written: an utterance of another
    language, or without a language, names the utt2lang file and the utterance."""
    from espnet_pathways.bin.add_language import read_segment_dirs
    from espnet_pathways.languages import UnknownLanguageError

    d = tmp_path / "dev_cs"
    d.mkdir()
    (d / "text").write_text("cs-1 čau\ncs-2 ahoj\n", encoding="utf-8")
    (d / "utt2lang").write_text("cs-1 cs\ncs-2 en\n")
    with pytest.raises(UnknownLanguageError, match=rf"{d}/utt2lang: utterance 'cs-2' is 'en'"):
        read_segment_dirs([str(d)], NEW)
    (d / "utt2lang").write_text("cs-1 cs\n")
    with pytest.raises(KeyError, match=r"utterance 'cs-2' .* has no language"):
        read_segment_dirs([str(d)], NEW)
    (d / "utt2lang").write_text("cs-1 cs\ncs-2 cs\n")
    assert read_segment_dirs([str(d)], NEW) == {d: {"cs-1": "čau", "cs-2": "ahoj"}}


def _scored(exp: Path, lang: str, rate: float, text: str = "u1 a\n") -> None:
    import json

    d = exp / "decode" / f"test_{lang}"
    for sub in ("score_cer", "score_wer"):
        (d / sub).mkdir(parents=True, exist_ok=True)
        (d / sub / "score.json").write_text(json.dumps(
            {"n_utt": 1, "n_ref": 10, "sub": 1, "del": 0, "ins": 0, "error_rate": rate,
             "missing": 0}))
    (d / "text").write_text(text)


@pytest.fixture
def add_results(tmp_path):
    """Stage 21's inputs (before, frozen, grown, stage times) and its two outputs."""
    from espnet_pathways.bin.add_language_results import main

    before, frozen, grown = (tmp_path / n for n in ("before", "frozen", "g"))
    grown.mkdir()
    (grown / "add_language.yaml").write_text(yaml.safe_dump(
        {"lang": NEW, "added_tokens": CS_CHARS, "vocab_size_before": 30,
         "vocab_size_after": 41, "added_parameters": 100}))
    _scored(before, "en", 50.0)
    _scored(frozen, "en", 50.0)
    _scored(frozen, NEW, 40.0, "u1 č\n")
    (before / "config.yaml").write_text(yaml.safe_dump({"languages": ["en"]}))
    times = tmp_path / "stage_times.tsv"
    times.write_text("2026-01-01 10:00:00\t5\ttrain the dense multilingual transducer\t600\n"
                     "2026-01-01 11:00:00\t13\tRESULTS.md\t6\n"
                     "2026-01-02 10:00:00\t18\tadd pl: data\t60\n"
                     "2026-01-02 10:05:00\t18\tadd cs: data\t120\n"
                     "2026-01-02 10:09:00\t19\tadd cs: vocabulary and grown model\t30\n")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nbody\n")
    out = tmp_path / "RESULTS_add_cs.md"
    argv = ["--lang", NEW, "--old_langs", "en", "--before", str(before),
            "--system", f"frozen={frozen}", "--grown", str(grown), "--decode_dir", "decode",
            "--out", str(out), "--results", str(results), "--stage_times", str(times)]
    main(argv)
    return argv, out, results, grown, before, frozen


def test_add_language_results_lists_its_own_stage_times(add_results, tmp_path):
    """RESULTS_add_cs.md: stages 18-21 that added cs; RESULTS.md (make_results): 1-17."""
    from espnet_pathways.reporting.results import stage_times_section

    _, out, results, *_ = add_results
    text = out.read_text()
    assert "### Stage timings" in text
    assert "| 18 | add cs: data | 2026-01-02 10:05:00 | 2.0 |" in text
    assert "| 19 | add cs: vocabulary and grown model |" in text
    assert "add pl" not in text and "| 5 |" not in text and "| 13 |" not in text
    assert "|  | total |  | 2.5 |" in text
    assert "reruns included" not in text  # each stage ran once
    assert "add cs: data" in results.read_text()  # the section in RESULTS.md has them too
    main_table = stage_times_section(tmp_path / "stage_times.tsv")
    assert "| 5 |" in main_table and "| 13 |" in main_table and "add " not in main_table


def test_a_stage_rerun_under_another_name_keeps_one_row(tmp_path):
    """Stage 20's name holds the add-language modes: a rerun in another mode replaces
    its row (the latest run counts) and both runs count in the last row."""
    from espnet_pathways.reporting.results import stage_times_section

    times = tmp_path / "stage_times.tsv"
    times.write_text("2026-01-02 10:00:00\t20\tadd cs: new pathway (frozen)\t600\t0\n"
                     "2026-01-02 11:00:00\t20\tadd cs: new pathway (shared)\t300\t0\n")
    table = stage_times_section(times, (18, 19, 20, 21), "add cs:")
    assert table.count("| 20 |") == 1 and "(shared)" in table and "(frozen)" not in table
    assert "|  | total |  | 5.0 |" in table
    assert "|  | all recorded runs of these stages (reruns included) |  | 15.0 |" in table


@pytest.mark.parametrize("case", ["missing_info", "garbled_info", "info_lacks_keys",
                                  "other_language", "unknown_old_language", "garbled_score",
                                  "score_lacks_rows", "no_new_language_score",
                                  "garbled_config", "lr_not_a_number", "results_not_text"])
def test_add_language_results_bad_input_keeps_both_outputs(add_results, capsys, case):
    from helpers import fails

    from espnet_pathways.bin.add_language_results import main

    argv, out, results, grown, before, frozen = add_results
    kept = out.read_bytes(), results.read_bytes()
    info = grown / "add_language.yaml"
    score = frozen / "decode" / f"test_{NEW}" / "score_wer" / "score.json"
    if case == "missing_info":
        info.unlink()
        culprit, why = info, "not found"
    elif case == "garbled_info":
        info.write_text("added_tokens: [a\n")
        culprit, why = info, "not valid YAML"
    elif case == "info_lacks_keys":
        info.write_text("lang: cs\nadded_tokens: [a]\n")
        culprit, why = info, "lacks ['added_parameters'"
    elif case == "other_language":
        argv[argv.index("--lang") + 1] = "de"
        culprit, why = info, "grown for language 'cs', not 'de'"
    elif case == "unknown_old_language":
        argv[argv.index("--old_langs") + 1] = "xx"
        culprit, why = before / "config.yaml", "not xx"
    elif case == "garbled_score":
        score.write_text('{"error_rate": 4')
        culprit, why = f"system frozen, language {NEW}: {score}", "cannot read"
    elif case == "score_lacks_rows":
        score.write_text('{"error_rate": 4.0}')
        culprit, why = f"system frozen, language {NEW}: {score}", "lacks"
    elif case == "no_new_language_score":
        import shutil

        shutil.rmtree(frozen / "decode" / f"test_{NEW}")
        culprit, why = "system frozen", f"no score for language '{NEW}'"
    elif case == "garbled_config":
        (frozen / "config.yaml").write_text("max_epoch: [\n")
        culprit, why = frozen / "config.yaml", "not valid YAML"
    elif case == "lr_not_a_number":
        (frozen / "config.yaml").write_text("optim_conf:\n  lr: fast\n")
        culprit, why = frozen / "config.yaml", "is not a number"
    else:
        results.write_bytes(b"\xff\xfe# Results\n")
        kept = out.read_bytes(), results.read_bytes()
        culprit, why = results, "not UTF-8"
    line = fails(main, argv, capsys)
    assert line.startswith(f"add_language_results: error: {culprit}") and why in line, line
    assert (out.read_bytes(), results.read_bytes()) == kept
