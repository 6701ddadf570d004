"""The bad-input catalogue (issue 11): every entry point fails clearly and loses nothing.

One test per case of the issue's table and per bin.  Each asserts: a non-zero exit, a
last stderr line ``<tool>: error: ...`` naming the culprit (file, utterance or language),
no traceback (``--verbose`` adds one), and that earlier outputs are intact.  The bins run
in-process through ``espnet_pathways.bin._cli.run`` (what ``python -m`` runs); a few
cases run as real subprocesses where a second process is the point (the lock).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import pytest
import soundfile
import torch
import yaml

from helpers import LANGS, ROOT, TINY_CONFIG, TOKENS, fails, tiny_args, tiny_model
from test_data_tokens import make_dir
from test_model import random_pathways

from espnet_pathways.bin._cli import run
from espnet_pathways.fileio import exclusive_lock
from espnet_pathways.masks import PathwayMasks, apply_masks_

CFG = "exp/asr_tiny/config.yaml"
MODEL = "exp/asr_tiny/model.pth"
MASKS = "exp/masks/random.pth"
MASKS_DE = "exp/masks/de_en_fr_it.pth"
DECODE = ["--beam_size", "2", "--decoding_window", "320", "--progress", "false"]


# ----------------------------------------------------------------------------- helpers


def speech(seed: int, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((int(16000 * seconds), channels)) * 0.1).astype("float32")
    return x[:, 0] if channels == 1 else x


def write_scp(path: Path, entries: Sequence[Tuple[str, Path]]) -> Path:
    path.write_text("".join(f"{k} {p}\n" for k, p in entries))
    return path


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and p.name != ".lock"}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A recipe dir with a tiny trained-model layout (config.yaml + checkpoint, as ESPnet
    writes them), random pathway masks, masks for other languages, and test audio."""
    root = tmp_path_factory.mktemp("recipe")
    (root / "exp/asr_tiny").mkdir(parents=True)
    (root / "exp/masks").mkdir(parents=True)
    model = tiny_model()
    masks = random_pathways(model, sparsity=0.7)
    apply_masks_(model, masks.union())
    torch.save(model.state_dict(), root / MODEL)
    masks.save(root / MASKS)
    # The same masks labelled de en fr it: a model of en fr it nl must refuse them.
    relabelled = dict(zip(["de", "en", "fr", "it"], (masks.masks[lang] for lang in LANGS)))
    PathwayMasks(relabelled, {"method": "random"}).save(root / MASKS_DE)
    cfg = dict(vars(tiny_args()))
    cfg["pathway_masks"] = MASKS
    (root / CFG).write_text(yaml.safe_dump(cfg))
    # config with absolute paths: usable from any directory
    cfg["pathway_masks"] = str(root / MASKS)
    (root / "exp/asr_tiny/config_abs.yaml").write_text(yaml.safe_dump(cfg))
    audio = root / "audio"
    audio.mkdir()
    for i in range(3):
        soundfile.write(audio / f"good{i}.wav", speech(i), 16000)
    soundfile.write(audio / "short.wav", speech(5, seconds=0.1), 16000)
    soundfile.write(audio / "stereo.wav", speech(6, channels=2), 16000)
    soundfile.write(audio / "rate8k.wav", speech(7)[:8000], 8000)
    (audio / "empty.wav").write_bytes(b"")
    (audio / "text.wav").write_text("this is not audio\n")
    return root


def model_args(recipe: Path) -> List[str]:
    return ["--asr_train_config", str(recipe / "exp/asr_tiny/config_abs.yaml"),
            "--asr_model_file", str(recipe / MODEL)]


@pytest.fixture(scope="module")
def packed(recipe, tmp_path_factory):
    """A dense packed zip of the tiny model, and copies of it that are broken."""
    from espnet_pathways.packing import pack_model

    out = tmp_path_factory.mktemp("zips")
    good = Path(pack_model(CFG, MODEL, out / "tiny.zip", root=recipe)["outpath"])
    no_masks = out / "no_masks.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(no_masks, "w") as dst:
        for info in src.infolist():
            if info.filename != MASKS:
                dst.writestr(info, src.read(info))
    truncated = out / "truncated.zip"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return {"good": good, "no_masks": no_masks, "truncated": truncated}


@pytest.fixture
def truncated_checkpoint(recipe, tmp_path) -> Path:
    data = (recipe / MODEL).read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 3])
    return path


def recognize_main():
    from espnet_pathways.bin.recognize import main

    return main


# ---------------------------------------------------------------- recognize: the table


def test_recognize_refuses_a_second_run_on_the_same_output_dir(recipe, tmp_path, capsys):
    """Two runs on one --output_dir: the second is refused by the lock, not merged."""
    out = tmp_path / "D"
    scp = write_scp(tmp_path / "wav.scp", [("utt0", recipe / "audio/good0.wav")])
    with exclusive_lock(out):
        line = fails(recognize_main(), model_args(recipe) + DECODE + [
            "--wav_scp", str(scp), "--lang", "en", "--output_dir", str(out)], capsys)
    assert str(out) in line and "another run" in line
    assert not (out / "1best_recog").exists()


def test_recognize_lock_holds_across_processes(recipe, tmp_path):
    """The same with a real second process (``python -m``): exit 1, one line, no merge."""
    out = tmp_path / "D"
    scp = write_scp(tmp_path / "wav.scp", [("utt0", recipe / "audio/good0.wav")])
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with exclusive_lock(out):
        proc = subprocess.run(
            [sys.executable, "-m", "espnet_pathways.bin.recognize", *model_args(recipe),
             *DECODE, "--wav_scp", str(scp), "--lang", "fr", "--output_dir", str(out)],
            capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("recognize: error: ") and str(out) in last, proc.stderr
    assert not (out / "1best_recog").exists()


def test_recognize_missing_file_skips_the_utterance_into_bad_utts(recipe, tmp_path, capsys):
    out = tmp_path / "D"
    good = [(f"utt{i}", recipe / f"audio/good{i}.wav") for i in range(3)]
    scp = write_scp(tmp_path / "wav.scp", good)
    recognize_main()(model_args(recipe) + DECODE + ["--wav_scp", str(scp), "--lang", "en",
                                                    "--output_dir", str(out)])
    assert len((out / "1best_recog/text").read_text().splitlines()) == 3
    bad_scp = write_scp(tmp_path / "bad.scp", good[:1] + [("uttX", tmp_path / "gone.wav")]
                        + good[1:])
    line = fails(recognize_main(), model_args(recipe) + DECODE + [
        "--wav_scp", str(bad_scp), "--lang", "en", "--output_dir", str(out)], capsys)
    assert "uttX" in line and "file not found" in line and "bad_utts" in line
    bad = (out / "bad_utts").read_text()
    assert bad.startswith("uttX ") and "file not found" in bad
    keys = [x.split()[0] for x in (out / "1best_recog/text").read_text().splitlines()]
    assert keys == ["utt0", "utt1", "utt2"]  # every other utterance decoded
    assert not list(out.glob(".partial_*"))


def test_recognize_skip_bad_false_stops_and_keeps_the_earlier_output(recipe, tmp_path, capsys):
    out = tmp_path / "D"
    good = [(f"utt{i}", recipe / f"audio/good{i}.wav") for i in range(2)]
    recognize_main()(model_args(recipe) + DECODE + [
        "--wav_scp", str(write_scp(tmp_path / "wav.scp", good)), "--lang", "en",
        "--output_dir", str(out)])
    before = snapshot(out)
    bad_scp = write_scp(tmp_path / "bad.scp", good + [("uttX", tmp_path / "gone.wav")])
    line = fails(recognize_main(), model_args(recipe) + DECODE + [
        "--wav_scp", str(bad_scp), "--lang", "fr", "--output_dir", str(out),
        "--skip_bad", "false"], capsys)
    assert "uttX" in line and "file not found" in line
    assert snapshot(out) == before  # the complete earlier 1best_recog, untouched


@pytest.mark.parametrize("name,reason", [("text.wav", "unreadable audio"),
                                         ("empty.wav", "empty file (0 bytes)"),
                                         ("stereo.wav", "2 channels"),
                                         ("rate8k.wav", "sampling rate 8000")])
def test_recognize_bad_audio_file_is_one_line(recipe, capsys, name, reason):
    wav = recipe / "audio" / name
    line = fails(recognize_main(), model_args(recipe) + DECODE + [
        "--wav", str(wav), "--lang", "en"], capsys)
    assert str(wav) in line and reason in line


def test_recognize_bad_audio_in_a_list_names_each_utterance(recipe, tmp_path, capsys):
    out = tmp_path / "D"
    entries = [("a_text", recipe / "audio/text.wav"), ("b_empty", recipe / "audio/empty.wav"),
               ("c_good", recipe / "audio/good0.wav"), ("d_stereo", recipe / "audio/stereo.wav")]
    line = fails(recognize_main(), model_args(recipe) + DECODE + [
        "--wav_scp", str(write_scp(tmp_path / "wav.scp", entries)), "--lang", "it",
        "--output_dir", str(out)], capsys)
    assert "3 of 4 utterances skipped" in line
    bad = dict(x.split(" ", 1) for x in (out / "bad_utts").read_text().splitlines())
    assert set(bad) == {"a_text", "b_empty", "d_stereo"}
    assert "unreadable audio" in bad["a_text"] and "2 channels" in bad["d_stereo"]
    assert "empty file" in bad["b_empty"]
    assert (out / "1best_recog/text").read_text().startswith("c_good")


def test_recognize_warns_on_a_too_short_input(recipe, capsys, caplog):
    wav = recipe / "audio/short.wav"
    with caplog.at_level("WARNING"):
        run(recognize_main(), model_args(recipe) + DECODE + ["--wav", str(wav), "--lang", "en"])
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(wav) in m and "0.10 s" in m and "too short" in m for m in warned), warned


def test_recognize_refuses_masks_for_other_languages(recipe, capsys):
    """Masks for de en fr it on an en fr it nl model: refused as in training, --lang de
    included (it used to decode)."""
    for lang in ("de", "nl"):
        line = fails(recognize_main(), model_args(recipe) + DECODE + [
            "--pathway_masks", str(recipe / MASKS_DE), "--wav",
            str(recipe / "audio/good0.wav"), "--lang", lang], capsys)
        assert MASKS_DE in line and "de" in line and "en fr it nl" in line


def test_recognize_unknown_language_in_utt2lang_names_utterance(recipe, tmp_path, capsys):
    scp = write_scp(tmp_path / "wav.scp", [("utt0", recipe / "audio/good0.wav"),
                                           ("utt1", recipe / "audio/good1.wav")])
    (tmp_path / "utt2lang").write_text("utt0 en\nutt1 de\n")
    line = fails(recognize_main(), model_args(recipe) + DECODE + [
        "--wav_scp", str(scp), "--utt2lang", str(tmp_path / "utt2lang"),
        "--output_dir", str(tmp_path / "D")], capsys)
    assert "'de'" in line and "utt1" in line and "en fr it nl" in line


def test_packed_zip_missing_its_masks_is_incomplete(recipe, packed, tmp_path, capsys,
                                                     monkeypatch):
    """A file of the masks' name in the current directory must not be used."""
    decoy = tmp_path / "cwd" / MASKS
    decoy.parent.mkdir(parents=True)
    shutil.copy(recipe / MASKS, decoy)
    monkeypatch.chdir(tmp_path / "cwd")
    line = fails(recognize_main(), ["--model", str(packed["no_masks"]), "--cachedir",
                                    str(tmp_path / "cache"), *DECODE, "--wav",
                                    str(recipe / "audio/good0.wav"), "--lang", "en"], capsys)
    assert str(packed["no_masks"]) in line and "incomplete" in line and MASKS in line


def test_unpacked_config_never_points_outside_the_unpacked_model(packed, tmp_path):
    from espnet_pathways.packing import unpack_model

    info = unpack_model(packed["good"], cachedir=tmp_path / "cache")
    cfg = yaml.safe_load(Path(info["asr_train_config"]).read_text())
    assert Path(cfg["pathway_masks"]).is_absolute()
    assert str(tmp_path / "cache") in cfg["pathway_masks"]


def test_truncated_zip_is_a_clear_error_and_leaves_no_cache(recipe, packed, tmp_path, capsys):
    cache = tmp_path / "cache"
    line = fails(recognize_main(), ["--model", str(packed["truncated"]), "--cachedir",
                                    str(cache), *DECODE, "--wav",
                                    str(recipe / "audio/good0.wav"), "--lang", "en"], capsys)
    assert str(packed["truncated"]) in line and "truncated" in line
    assert not cache.exists() or not any(cache.iterdir())  # no stale dir, no .lock


def test_failed_unpack_removes_its_cache_entries(packed, tmp_path, monkeypatch):
    """Past the zip check (e.g. a zip that breaks while being read), the unpacker's own
    failure still leaves no half-unpacked cache dir or .lock behind."""
    import espnet_pathways.packing as packing

    monkeypatch.setattr(packing, "check_packed_zip", lambda path: None)
    cache = tmp_path / "cache"
    with pytest.raises(packing.IncompleteModelError, match="truncated"):
        packing.unpack_model(packed["truncated"], cachedir=cache)
    assert not any(cache.iterdir())


def test_hf_upload_does_not_call_a_truncated_zip_complete(packed, tmp_path, capsys):
    from espnet_pathways.bin.hf_upload import main as upload

    for kind in ("truncated", "no_masks"):
        line = fails(upload, ["--model", str(packed[kind]), "--repo_id", "someone/x",
                              "--dry_run", "true", "--staging_dir", str(tmp_path / kind)],
                     capsys)
        assert str(packed[kind]) in line and ("truncated" in line or "incomplete" in line)
        assert "zip is complete" not in line
        assert not (tmp_path / kind).exists()


def test_truncated_checkpoint_at_inference_names_the_file(recipe, truncated_checkpoint,
                                                          tmp_path, capsys):
    from espnet_pathways.bin.asr_pathways_inference import main as infer

    scp = write_scp(tmp_path / "wav.scp", [("utt0", recipe / "audio/good0.wav")])
    line = fails(infer, ["--asr_train_config", str(recipe / "exp/asr_tiny/config_abs.yaml"),
                         "--asr_model_file", str(truncated_checkpoint), "--lang", "en",
                         "--data_path_and_name_and_type", f"{scp},speech,sound",
                         "--output_dir", str(tmp_path / "out")], capsys)
    assert str(truncated_checkpoint) in line and "truncated" in line


def test_truncated_init_param_keeps_the_experiment_config(recipe, truncated_checkpoint,
                                                          tmp_path, capsys):
    from espnet_pathways.bin.asr_pathways_train import main as train

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text("the: experiment's config\n")
    (tmp_path / "tokens.txt").write_text("".join(f"{t}\n" for t in TOKENS))
    line = fails(train, ["--config", str(TINY_CONFIG), "--token_list",
                         str(tmp_path / "tokens.txt"), "--languages", *LANGS,
                         "--output_dir", str(exp), "--init_param", str(truncated_checkpoint)],
                 capsys)
    assert str(truncated_checkpoint) in line and "--init_param" in line
    assert (exp / "config.yaml").read_text() == "the: experiment's config\n"
    # The control: a readable --init_param passes the check and ESPnet goes on (a dry
    # run builds the model and writes config.yaml, then stops).
    run(train, ["--config", str(TINY_CONFIG), "--token_list", str(tmp_path / "tokens.txt"),
                "--languages", *LANGS, "--output_dir", str(exp), "--init_param",
                str(recipe / MODEL), "--dry_run", "true"])
    assert yaml.safe_load((exp / "config.yaml").read_text())["init_param"] == [str(recipe / MODEL)]


def test_verbose_adds_the_traceback(recipe, capsys):
    with pytest.raises(SystemExit):
        run(recognize_main(), model_args(recipe) + ["--wav", "/nonexistent.wav", "--lang",
                                                    "en", "--verbose"])
    assert "Traceback" in capsys.readouterr().err


# -------------------------------------------------------------- stage 2 (format_data)


def format_data(argv, capsys):
    from espnet_pathways.bin.format_data import main

    return fails(main, argv, capsys)


def rows_with(bad):
    return [(f"s{i}-u{i}", "en", "fine words", "ok") for i in range(40)] + bad


def run_format(tmp_path, rows, monkeypatch=None):
    from espnet_pathways.bin.format_data import main

    d = make_dir(tmp_path, rows)
    main(["--languages", *LANGS, "--src", str(d), "--dst", str(tmp_path / "dump")])
    return dict(x.split(" ", 1) for x in (tmp_path / "dump/bad_utts").read_text().splitlines())


def test_stage2_skips_a_punctuation_only_transcript(tmp_path):
    bad = run_format(tmp_path, rows_with([("s9-punct", "en", "?! ... ,;", "ok")]))
    assert "no words" in bad["s9-punct"] and "?! ... ,;" in bad["s9-punct"]
    assert "s9-punct" not in (tmp_path / "dump/text").read_text()


def test_stage2_skips_stereo_audio(tmp_path):
    rows = rows_with([("s9-stereo", "en", "two channels", "ok")])
    d = make_dir(tmp_path, rows)
    soundfile.write(tmp_path / "s9-stereo.wav", speech(1, 0.3, channels=2), 16000)
    from espnet_pathways.bin.format_data import main

    main(["--languages", *LANGS, "--src", str(d), "--dst", str(tmp_path / "dump")])
    bad = (tmp_path / "dump/bad_utts").read_text()
    assert bad.startswith("s9-stereo ") and "2 channels" in bad


def test_stage2_names_a_missing_wav_file_not_found(tmp_path):
    bad = run_format(tmp_path, rows_with([("s9-gone", "en", "words", "missing")]))
    assert "audio file not found" in bad["s9-gone"] and "System error" not in bad["s9-gone"]


def test_stage2_names_empty_and_non_audio_files(tmp_path):
    rows = rows_with([("s9-zero", "en", "words", "ok"), ("s9-text", "en", "words", "bad")])
    d = make_dir(tmp_path, rows)
    (tmp_path / "s9-zero.wav").write_bytes(b"")
    from espnet_pathways.bin.format_data import main

    main(["--languages", *LANGS, "--src", str(d), "--dst", str(tmp_path / "dump"),
          "--max_bad_fraction", "0.1"])
    bad = dict(x.split(" ", 1) for x in (tmp_path / "dump/bad_utts").read_text().splitlines())
    assert "empty audio file (0 bytes)" in bad["s9-zero"] and "s9-zero.wav" in bad["s9-zero"]
    assert "unreadable audio" in bad["s9-text"] and "Format not recognised" in bad["s9-text"]


def test_stage2_too_many_bad_stops_with_the_first_reason_and_keeps_the_dump(tmp_path, capsys):
    rows = [("s1-a", "en", "fine", "ok"), ("s2-b", "en", "?!", "ok")]
    d = make_dir(tmp_path, rows)
    dump = tmp_path / "dump"
    dump.mkdir()
    (dump / "text").write_text("earlier output\n")
    line = format_data(["--languages", *LANGS, "--src", str(d), "--dst", str(dump)], capsys)
    assert "'en'" in line and "s2-b" in line and "no words" in line
    assert (dump / "text").read_text() == "earlier output\n"


def test_stage2_wrong_rate_stops_naming_the_utterance_and_keeps_the_old_dump(tmp_path, capsys):
    d = make_dir(tmp_path, [("s1-a", "en", "hello", "ok")], rate=8000)
    dump = tmp_path / "dump"
    dump.mkdir()
    (dump / "text").write_text("earlier output\n")
    line = format_data(["--languages", *LANGS, "--src", str(d), "--dst", str(dump)], capsys)
    assert "'s1-a'" in line and "sampling rate 8000" in line
    assert (dump / "text").read_text() == "earlier output\n"


def test_format_data_missing_dir_names_it(tmp_path, capsys):
    line = format_data(["--languages", *LANGS, "--src", str(tmp_path / "nodir"),
                        "--dst", str(tmp_path / "dump")], capsys)
    assert str(tmp_path / "nodir") in line and "lacks" in line


def test_format_data_duplicated_key_names_the_file(tmp_path, capsys):
    d = make_dir(tmp_path, [("s1-a", "en", "hello", "ok")])
    with (d / "text").open("a") as f:
        f.write("s1-a again\n")
    line = format_data(["--languages", *LANGS, "--src", str(d), "--dst",
                        str(tmp_path / "dump")], capsys)
    assert str(d / "text") in line and "s1-a" in line and "duplicated" in line


# -------------------------------------------------------------------- the other bins


def test_asr_pathways_inference_missing_utt2lang_entry(recipe, tmp_path, capsys):
    from espnet_pathways.bin.asr_pathways_inference import main as infer

    scp = write_scp(tmp_path / "wav.scp", [("utt0", recipe / "audio/good0.wav"),
                                           ("utt1", recipe / "audio/good1.wav")])
    (tmp_path / "utt2lang").write_text("utt0 en\n")
    line = fails(infer, model_args(recipe) + [
        "--data_path_and_name_and_type", f"{scp},speech,sound", "--utt2lang",
        str(tmp_path / "utt2lang"), "--output_dir", str(tmp_path / "out")], capsys)
    assert "utt1" in line and str(tmp_path / "utt2lang") in line


def test_asr_pathways_inference_bad_lm_options_name_the_culprit(recipe, tmp_path, capsys):
    """An LM config without its checkpoint, a missing LM file: one line each, nothing
    written to the output dir."""
    from espnet_pathways.bin.asr_pathways_inference import main as infer

    scp = write_scp(tmp_path / "wav.scp", [("utt0", recipe / "audio/good0.wav")])
    base = model_args(recipe) + ["--data_path_and_name_and_type", f"{scp},speech,sound",
                                 "--lang", "it", "--lm_weight", "0.3"]
    line = fails(infer, base + ["--lm_train_config", str(recipe / CFG),
                                "--output_dir", str(tmp_path / "a")], capsys)
    assert "--lm_train_config and --lm_file" in line
    missing = tmp_path / "lm" / "valid.loss.best.pth"
    line = fails(infer, base + ["--lm_train_config", str(recipe / CFG), "--lm_file",
                                str(missing), "--output_dir", str(tmp_path / "b")], capsys)
    assert str(missing) in line and "LM model file not found" in line
    assert not (tmp_path / "b" / "1best_recog").exists()


def test_asr_pathways_inference_bad_utterance_into_bad_utts(recipe, tmp_path, capsys):
    from espnet_pathways.bin.asr_pathways_inference import main as infer

    scp = write_scp(tmp_path / "wav.scp", [("utt0", recipe / "audio/good0.wav"),
                                           ("uttX", recipe / "audio/text.wav")])
    out = tmp_path / "out"
    line = fails(infer, model_args(recipe) + [
        "--data_path_and_name_and_type", f"{scp},speech,sound", "--lang", "it",
        "--streaming", "false", "--beam_size", "2", "--output_dir", str(out)], capsys)
    assert "uttX" in line and "unreadable audio" in line
    assert (out / "bad_utts").read_text().startswith("uttX ")
    assert (out / "1best_recog/text").read_text().startswith("utt0")
    assert (out / "rtf").read_text().startswith("all ")  # the format make_results reads


def test_pathway_masks_truncated_file_and_output_kept(recipe, tmp_path, capsys):
    from espnet_pathways.bin.pathway_masks import main as masks_cli

    out = tmp_path / "random.pth"
    out.write_bytes(b"earlier mask file")
    data = (recipe / MASKS).read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    line = fails(masks_cli, ["random", "--like", str(tmp_path / "cut.pth"), "--out", str(out)],
                 capsys)
    assert str(tmp_path / "cut.pth") in line
    assert out.read_bytes() == b"earlier mask file"
    line = fails(masks_cli, ["combine", "--out", str(out), f"nl={recipe / MASKS_DE}"], capsys)
    assert MASKS_DE in line and "'nl'" in line
    assert out.read_bytes() == b"earlier mask file"


def test_pathway_masks_info_truncated_model_names_it(recipe, truncated_checkpoint, tmp_path,
                                                     capsys):
    from espnet_pathways.bin.pathway_masks import main as masks_cli

    line = fails(masks_cli, ["info", "--model_file", str(truncated_checkpoint), "--out",
                             str(tmp_path / "info.json")], capsys)
    assert str(truncated_checkpoint) in line and not (tmp_path / "info.json").exists()


def test_asr_pathways_pack_truncated_model_keeps_the_earlier_zip(recipe, packed,
                                                                  truncated_checkpoint,
                                                                  tmp_path, capsys):
    from espnet_pathways.bin.asr_pathways_pack import main as pack

    out = tmp_path / "model.zip"
    shutil.copy(packed["good"], out)
    before = out.read_bytes()
    line = fails(pack, ["--asr_train_config", CFG, "--asr_model_file",
                        str(truncated_checkpoint), "--compact", "true", "--root", str(recipe),
                        "--outpath", str(out)], capsys)
    assert str(truncated_checkpoint) in line
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "model.zip", "truncated.pth"]
    line = fails(pack, ["--asr_train_config", "exp/asr_tiny/nope.yaml", "--asr_model_file",
                        MODEL, "--root", str(recipe), "--outpath", str(out)], capsys)
    assert "nope.yaml" in line and out.read_bytes() == before


def test_asr_pathways_pack_bad_lm_options_keep_the_earlier_zip(recipe, packed, tmp_path,
                                                               capsys):
    """An LM config without its model, a missing LM file, a missing decoding config: one
    line each naming what is wrong, and the zip already there is kept as it was."""
    from espnet_pathways.bin.asr_pathways_pack import main as pack

    out = tmp_path / "model.zip"
    shutil.copy(packed["good"], out)
    before = out.read_bytes()
    base = ["--asr_train_config", CFG, "--asr_model_file", MODEL, "--root", str(recipe),
            "--outpath", str(out)]
    line = fails(pack, base + ["--lm_train_config", CFG], capsys)
    assert "--lm_train_config and --lm_file" in line
    line = fails(pack, base + ["--lm_train_config", CFG, "--lm_file", "exp/lm/nope.pth"],
                 capsys)
    assert "exp/lm/nope.pth: LM model file not found" in line
    line = fails(pack, base + ["--decode_config", "conf/nope.yaml"], capsys)
    assert "conf/nope.yaml: decoding config not found" in line
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "model.zip"]


def test_recognize_missing_lm_file_names_it(recipe, capsys):
    line = fails(recognize_main(), model_args(recipe) + DECODE + [
        "--lm_train_config", str(recipe / CFG), "--lm_file", str(recipe / "exp/lm/nope.pth"),
        "--lang", "it", "--wav", str(recipe / "audio/good0.wav")], capsys)
    assert "exp/lm/nope.pth: LM model file not found" in line


def test_export_pathway_truncated_model_and_unknown_language(recipe, truncated_checkpoint,
                                                             tmp_path, capsys):
    from espnet_pathways.bin.export_pathway import main as export

    out = tmp_path / "export"
    common = ["--asr_train_config", str(recipe / "exp/asr_tiny/config_abs.yaml"),
              "--out_dir", str(out)]
    line = fails(export, common + ["--asr_model_file", str(truncated_checkpoint),
                                   "--lang", "it"], capsys)
    assert str(truncated_checkpoint) in line and not out.exists()
    line = fails(export, common + ["--asr_model_file", str(recipe / MODEL), "--lang", "de"],
                 capsys)
    assert "'de'" in line and not out.exists()
    out.mkdir()
    (out / "model.pth").write_bytes(b"an earlier export")
    with exclusive_lock(out):  # another export into the same directory: refused, kept
        line = fails(export, common + ["--asr_model_file", str(recipe / MODEL), "--lang", "it"],
                     capsys)
    assert str(out) in line and "another run" in line
    assert (out / "model.pth").read_bytes() == b"an earlier export"
    assert sorted(p.name for p in out.iterdir()) == [".lock", "model.pth"]


def test_make_tokens_missing_and_duplicated_text(tmp_path, capsys):
    from espnet_pathways.bin.make_tokens import main as make_tokens

    out = tmp_path / "tokens"
    line = fails(make_tokens, ["--vocab_size", "10", "--text", str(tmp_path / "nope"),
                               "--out_dir", str(out)], capsys)
    assert str(tmp_path / "nope") in line and "not found" in line
    (tmp_path / "text").write_text("u1 hello\nu1 again\n")
    line = fails(make_tokens, ["--vocab_size", "10", "--text", str(tmp_path / "text"),
                               "--out_dir", str(out)], capsys)
    assert str(tmp_path / "text") in line and "u1" in line
    assert not out.exists() or not any(out.iterdir())


def test_make_tokens_merged_unknown_utterance_language(tmp_path, capsys):
    from espnet_pathways.bin.make_tokens import main as make_tokens

    (tmp_path / "text").write_text("u1 hello\nu2 ciao\n")
    (tmp_path / "utt2lang").write_text("u1 en\n")
    line = fails(make_tokens, ["--mode", "merged", "--vocab_size", "10", "--text",
                               str(tmp_path / "text"), "--utt2lang", str(tmp_path / "utt2lang"),
                               "--out_dir", str(tmp_path / "tokens")], capsys)
    assert "u2" in line and str(tmp_path / "utt2lang") in line and str(tmp_path / "text") in line


def test_format_data_refuses_a_second_writer(tmp_path, capsys):
    d = make_dir(tmp_path, [("s1-a", "en", "hello", "ok")])
    dump = tmp_path / "dump"
    with exclusive_lock(dump):
        line = format_data(["--languages", *LANGS, "--src", str(d), "--dst", str(dump)],
                           capsys)
    assert str(dump) in line and "another run" in line
    assert not (dump / "text").exists()


def test_quantize_model_refuses_a_pathway_config_and_names_a_truncated_model(
        recipe, truncated_checkpoint, tmp_path, capsys):
    from espnet_pathways.bin.quantize_model import main as quantize

    out = tmp_path / "model.int8.pth"
    out.write_bytes(b"an earlier int8 file")
    pathway_cfg = recipe / "exp/asr_tiny/config_abs.yaml"
    line = fails(quantize, ["--asr_train_config", str(pathway_cfg), "--asr_model_file",
                            str(recipe / MODEL), "--out", str(out)], capsys)
    assert str(pathway_cfg) in line and "export_pathway" in line
    cfg = yaml.safe_load(pathway_cfg.read_text())
    cfg.pop("pathway_masks")
    dense_cfg = tmp_path / "dense.yaml"
    dense_cfg.write_text(yaml.safe_dump(cfg))
    line = fails(quantize, ["--asr_train_config", str(dense_cfg), "--asr_model_file",
                            str(truncated_checkpoint), "--out", str(out)], capsys)
    assert str(truncated_checkpoint) in line
    assert out.read_bytes() == b"an earlier int8 file"
