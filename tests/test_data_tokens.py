"""Data-dir checks (bad input → clear errors or documented skips), tokens, sampler, mask CLI."""
from __future__ import annotations

import json
import random
import wave
from pathlib import Path

import pytest
import torch

from espnet_pathways import tokens
from espnet_pathways.datadir import DataDir, DataDirError, check_datadir, write_datadir
from espnet_pathways.languages import UnknownLanguageError

LANGS = ["en", "fr", "it", "nl"]


def write_wav(path: Path, seconds: float = 0.3, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x01" * int(seconds * rate))


def make_dir(tmp_path: Path, rows, rate=16000) -> Path:
    """rows: (utt, lang or None, text or None, audio: 'ok'|'bad'|'missing')"""
    d = tmp_path / "data"
    d.mkdir()
    files = {k: [] for k in ("wav.scp", "text", "utt2spk", "utt2lang")}
    for utt, lang, text, audio in rows:
        wav = tmp_path / f"{utt}.wav"
        if audio == "ok":
            write_wav(wav, rate=rate)
        elif audio == "bad":
            wav.write_bytes(b"not a wav file")
        files["wav.scp"].append(f"{utt} {wav}")
        if text is not None:
            files["text"].append(f"{utt} {text}")
        files["utt2spk"].append(f"{utt} {utt.split('-')[0]}")
        if lang is not None:
            files["utt2lang"].append(f"{utt} {lang}")
    for name, lines in files.items():
        (d / name).write_text("".join(x + "\n" for x in lines))
    return d


def test_datadir_writes_lang_ids_and_category2utt(tmp_path):
    d = make_dir(tmp_path, [("s1-a", "en", "hello world", "ok"), ("s2-b", "it", "ciao", "ok"),
                            ("s3-c", "it", "buongiorno", "ok")])
    src = DataDir.read(d)
    utts, n = check_datadir(src, LANGS)
    out = write_datadir(src, utts, n, LANGS, tmp_path / "dump")
    assert (out / "utt2lang_id").read_text() == "s1-a 0\ns2-b 2\ns3-c 2\n"
    assert (out / "category2utt").read_text() == "en s1-a\nit s2-b s3-c\n"
    assert (out / "utt2num_samples").read_text().startswith("s1-a 4800")


def test_missing_utt2lang_entry_names_the_utterance(tmp_path):
    d = make_dir(tmp_path, [("s1-a", "en", "hello", "ok"), ("s2-b", None, "x", "ok")])
    with pytest.raises(DataDirError, match=r"'s2-b' has no entry in .*utt2lang"):
        check_datadir(DataDir.read(d), LANGS)


def test_unknown_language_names_utterance_and_language(tmp_path):
    d = make_dir(tmp_path, [("s1-a", "de", "hallo", "ok")])
    with pytest.raises(UnknownLanguageError, match=r"'s1-a'.*'de'.*en fr it nl"):
        check_datadir(DataDir.read(d), LANGS)


def test_bad_audio_and_empty_transcript_are_skipped_with_a_reason(tmp_path, caplog):
    rows = [(f"s{i}-u{i}", "en", "fine words", "ok") for i in range(40)]
    rows += [("s9-bad", "en", "words", "bad"), ("s9-empty", "en", "", "ok")]
    d = make_dir(tmp_path, rows)
    src = DataDir.read(d)
    utts, n = check_datadir(src, LANGS)
    assert "s9-bad" not in utts and "s9-empty" not in utts and len(utts) == 40
    reasons = dict(src.bad)
    assert "unreadable audio" in reasons["s9-bad"] and "s9-bad.wav" in reasons["s9-bad"]
    assert "empty transcript" in reasons["s9-empty"]
    assert "skipping utterance s9-bad (en)" in caplog.text
    out = write_datadir(src, utts, n, LANGS, tmp_path / "dump")
    assert "s9-bad" in (out / "bad_utts").read_text()


def test_too_many_bad_utterances_stop_naming_the_language(tmp_path):
    d = make_dir(tmp_path, [("s1-a", "fr", "un", "bad"), ("s2-b", "fr", "deux", "ok")])
    with pytest.raises(DataDirError, match="language 'fr'"):
        check_datadir(DataDir.read(d), LANGS)


def test_wrong_sampling_rate_is_an_error(tmp_path):
    d = make_dir(tmp_path, [("s1-a", "en", "hello", "ok")], rate=8000)
    with pytest.raises(DataDirError, match="sampling rate 8000"):
        check_datadir(DataDir.read(d), LANGS)


TEXT = {
    "en-1": "the fish swims in the sea", "en-2": "the big fish is here",
    "fr-1": "le poisson nage dans la mer", "fr-2": "le gros poisson est là",
    "it-1": "il pesce nuota nel mare", "it-2": "dov'è il pesce grande",
}
UTT2LANG = {u: u.split("-")[0] for u in TEXT}


def test_shared_sentencepiece_token_list(tmp_path):
    toks = tokens.make_shared(TEXT, tmp_path, vocab_size=40)
    assert toks[0] == "<blank>" and toks[1] == "<unk>" and toks[-1] == "<sos/eos>"
    assert len(toks) == len(set(toks))
    assert (tmp_path / "bpe.model").exists()


def test_a_vocabulary_smaller_than_the_alphabet_is_raised_to_hold_it(tmp_path, caplog):
    """A unigram model must hold every character (Czech has more letters than the smoke
    recipe's 30 pieces): the size is raised with a warning, not a sentencepiece error."""
    text = ["příliš žluťoučký kůň úpěl ďábelské ódy", "abc def ghi jkl mno pqr stu vwx yz"]
    n_chars = len({c for s in text for c in s if c != " "}) + 1  # + the word boundary
    assert n_chars + 3 > 30
    with caplog.at_level("WARNING"):
        model = tokens.train_sentencepiece(text, tmp_path / "cs" / "bpe", 30, "unigram")
    assert f"vocab_size raised from 30 to {n_chars + 3}" in caplog.text
    pieces = "".join(tokens.model_pieces(model))
    assert all(c in pieces for s in text for c in s if c != " ")


def test_merged_per_language_pieces_deduplicated_and_round_trip(tmp_path):
    toks = tokens.make_merged(TEXT, UTT2LANG, tmp_path, vocab_size=25)
    assert len(toks) == len(set(toks))
    for lang in ("en", "fr", "it"):
        assert set(tokens.model_pieces(tmp_path / lang / "bpe.model")) <= set(toks)
    seg = tokens.segment_merged(TEXT, UTT2LANG, tmp_path)
    for utt, pieces in seg.items():
        assert all(p in toks for p in pieces.split())
        assert tokens.pieces_to_text(pieces.split()) == TEXT[utt]
    with pytest.raises(FileNotFoundError, match="no word-piece model for language 'nl'"):
        tokens.segment_merged({"nl-1": "vis"}, {"nl-1": "nl"}, tmp_path)


def test_language_homogeneous_sampler(tmp_path):
    from espnet_pathways.samplers import LanguageHomogeneousSampler

    utts = {"en": [f"en-{i}" for i in range(60)], "it": [f"it-{i}" for i in range(10)]}
    (tmp_path / "shape").write_text("".join(f"{u} 100\n" for us in utts.values() for u in us))
    (tmp_path / "c2u").write_text("".join(f"{k} {' '.join(v)}\n" for k, v in utts.items()))
    args = dict(batch_bins=500, shape_files=[str(tmp_path / "shape")],
                category2utt_file=str(tmp_path / "c2u"))
    prop = LanguageHomogeneousSampler(power=1.0, **args)
    flat = LanguageHomogeneousSampler(power=0.0, **args)
    for s in (prop, flat):
        for batch in s:
            assert len({u.split("-")[0] for u in batch}) == 1
    count = lambda s, lang: sum(1 for b in s if b[0].startswith(lang))  # noqa: E731
    assert count(prop, "en") > 4 * count(prop, "it")
    assert count(flat, "en") == count(flat, "it")  # beta = 0: uniform over languages
    assert list(LanguageHomogeneousSampler(power=0.5, seed=3, **args)) == \
        list(LanguageHomogeneousSampler(power=0.5, seed=3, **args))


def test_language_homogeneous_sampler_draws_anew_every_epoch(tmp_path):
    """ESPnet's iterator asks for ``generate(epoch + seed)``: a down-sampled language
    gets a different subset of its batches in each epoch and, over the epochs, all of
    them; the same seed gives the same draw (every DDP rank draws alike)."""
    from espnet_pathways.samplers import LanguageHomogeneousSampler, RankShareSampler

    utts = {"en": [f"en-{i}" for i in range(60)], "it": [f"it-{i}" for i in range(10)]}
    (tmp_path / "shape").write_text("".join(f"{u} 100\n" for us in utts.values() for u in us))
    (tmp_path / "c2u").write_text("".join(f"{k} {' '.join(v)}\n" for k, v in utts.items()))
    s = LanguageHomogeneousSampler(batch_bins=500, shape_files=[str(tmp_path / "shape")],
                                   category2utt_file=str(tmp_path / "c2u"), power=0.0, seed=3)
    assert list(s) == s.generate(3) and s.generate(5) == s.generate(5)
    en = [{u for b in s.generate(e) for u in b if u.startswith("en")} for e in range(1, 9)]
    assert len(en[0]) < 60 and en[0] != en[1]  # down-sampled: a subset, not the same one
    assert set().union(*en) == set(utts["en"])  # over the epochs, all of its data
    halves = [RankShareSampler(s, r, 2).generate(4) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves)] != [] and all(
        sorted(a + b) == sorted(full) for a, b, full in zip(*halves, s.generate(4)))


def test_language_homogeneous_sampler_packs_similar_lengths(tmp_path):
    """Batches are cut from each language's utterances sorted by length (as numel packs
    the corpus), so padding stays small; DDP's minimum batch size is respected."""
    from espnet_pathways.samplers import LanguageHomogeneousSampler

    rng = random.Random(0)
    sizes = {f"{lang}-{i}": rng.randint(10, 100) for lang in ("en", "it") for i in range(200)}
    (tmp_path / "shape").write_text("".join(f"{u} {n}\n" for u, n in sizes.items()))
    (tmp_path / "c2u").write_text("".join(
        f"{lang} {' '.join(u for u in sizes if u.startswith(lang))}\n" for lang in ("en", "it")))
    s = LanguageHomogeneousSampler(batch_bins=400, shape_files=[str(tmp_path / "shape")],
                                   category2utt_file=str(tmp_path / "c2u"), power=0.0,
                                   min_batch_size=2)
    batches = list(s)
    padded = sum(len(b) * max(sizes[u] for u in b) for b in batches)
    audio = sum(sizes[u] for b in batches for u in b)
    assert padded < 1.15 * audio, (padded, audio)  # random packing: about 1.6x here
    for b in batches:
        assert len(b) >= 2 and len({u.split("-")[0] for u in b}) == 1
        assert [sizes[u] for u in b] == sorted((sizes[u] for u in b), reverse=True)
    seen = [u for b in batches for u in b]
    assert len(seen) == len(set(seen))  # no language is up-sampled: no utterance twice
    assert len(seen) > 0.8 * len(sizes)  # an epoch is about total / batch_bins batches


def test_language_homogeneous_sampler_names_a_language_too_small_for_the_ranks(tmp_path):
    from espnet_pathways.samplers import LanguageHomogeneousSampler

    (tmp_path / "shape").write_text("en-0 10\nen-1 10\nen-2 10\nit-0 10\n")
    (tmp_path / "c2u").write_text("en en-0 en-1 en-2\nit it-0\n")
    with pytest.raises(ValueError, match="for it: it has 1"):
        LanguageHomogeneousSampler(batch_bins=100, shape_files=[str(tmp_path / "shape")],
                                   category2utt_file=str(tmp_path / "c2u"), min_batch_size=2)


def test_pathway_masks_cli_combine_random_inspect_info(tmp_path, capsys):
    from espnet_pathways.bin.pathway_masks import main
    from espnet_pathways.masks import PathwayMasks

    shapes = {"a.weight": (4, 5), "b.weight": (3, 3)}
    for i, lang in enumerate(["en", "it"]):
        g = torch.Generator().manual_seed(i)
        m = {n: torch.rand(s, generator=g) > 0.5 for n, s in shapes.items()}
        PathwayMasks({lang: m}, {"method": "imp"}).save(tmp_path / f"{lang}.pth")
    main(["combine", "--out", str(tmp_path / "all.pth"),
          f"en={tmp_path / 'en.pth'}", f"it={tmp_path / 'it.pth'}"])
    combined = PathwayMasks.load(tmp_path / "all.pth")
    assert combined.languages == ["en", "it"]
    main(["random", "--like", str(tmp_path / "all.pth"), "--out", str(tmp_path / "rnd.pth")])
    rnd = PathwayMasks.load(tmp_path / "rnd.pth")
    for lang in ("en", "it"):
        assert abs(rnd.sparsity(lang) - combined.sparsity(lang)) < 1 / 29
    main(["inspect", str(tmp_path / "all.pth"), "--overlap_json", str(tmp_path / "o.json")])
    o = json.loads((tmp_path / "o.json").read_text())
    assert o["overlap"]["en"]["it"] == pytest.approx(combined.overlap("en", "it"))
    torch.save({"a.weight": torch.ones(4, 5), "b.weight": torch.ones(3, 3),
                "ctc_lin.weight": torch.ones(2, 2)}, tmp_path / "model.pth")
    main(["info", "--model_file", str(tmp_path / "model.pth"), "--masks",
          str(tmp_path / "all.pth"), "--out", str(tmp_path / "info.json")])
    info = json.loads((tmp_path / "info.json").read_text())
    union_pruned = sum(int((~m).sum()) for m in combined.union().values())
    assert info["params_total"] == 33 and info["params_kept"] == 33 - union_pruned


@pytest.mark.parametrize("text,problem", [("", "empty transcript"),
                                          ("?! ... ,;", "no words"),
                                          ("« — »", "no words"),
                                          ("ok?", None), ("l'été", None), ("42", None)])
def test_transcript_problem(text, problem):
    from espnet_pathways.datadir import transcript_problem

    got = transcript_problem(text)
    assert (got is None) if problem is None else (problem in got)


def test_read_utt2lang_names_the_file(tmp_path):
    from espnet_pathways.languages import read_utt2lang

    (tmp_path / "utt2lang").write_text("u1 en\nu2\n")
    with pytest.raises(ValueError, match=r"utt2lang: utterance u2"):
        read_utt2lang(tmp_path / "utt2lang")
    (tmp_path / "utt2lang").write_text("u1 en\nu1 fr\n")
    with pytest.raises(ValueError, match=r"utt2lang.*u1 is duplicated"):
        read_utt2lang(tmp_path / "utt2lang")
    with pytest.raises(FileNotFoundError, match="nope: file not found"):
        read_utt2lang(tmp_path / "nope")


def test_failed_sentencepiece_training_keeps_the_earlier_model(tmp_path):
    model = tokens.train_sentencepiece(["hello world", "ciao mondo"], tmp_path / "bpe", 12,
                                       "char")
    before = model.read_bytes()
    with pytest.raises(ValueError, match="no text"):
        tokens.train_sentencepiece(["  "], tmp_path / "bpe", 12, "char")
    with pytest.raises(Exception):
        tokens.train_sentencepiece(["abc"], tmp_path / "bpe", 12, "no_such_type")
    assert model.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bpe.model", "bpe.vocab"]
