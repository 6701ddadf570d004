"""egs2/mls_pathways/asr1/local/data.sh on a tiny fake MLS tree (flac via soundfile),
the MLS configs, and the Slurm runner (with a fake sbatch)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs2" / "mls_pathways" / "asr1"
DATA_SH = RECIPE / "local" / "data.sh"
SLURM_SH = ROOT / "egs2" / "TEMPLATE" / "asr_pathways" / "utils" / "slurm.sh"

# language -> {split: [(speaker, book, utt, seconds, text)]}
CORPUS = {
    "english": [("100", "200", 0, 1.0, "Hello, World!"), ("100", "200", 1, 1.0, "It's fine."),
                ("101", "300", 0, 1.0, "another book"), ("101", "300", 1, 1.0, "and more")],
    "italian": [("7", "8", 0, 1.5, "Dell'aereo è partito"), ("7", "8", 1, 1.5, "ciao"),
                ("9", "10", 0, 1.5, "una casa"), ("9", "10", 1, 1.5, "due case")],
    "dutch": [("55", "66", 0, 0.5, "'s Avonds thuis"), ("55", "66", 1, 0.5, "goed zo")],
}


def make_mls(root: Path, langs=CORPUS, segments=False) -> Path:
    import soundfile as sf

    for lang, utts in langs.items():
        for split in ("train", "dev", "test"):
            d = root / f"mls_{lang}" / split
            (d / "audio").mkdir(parents=True)
            lines, segs = [], []
            for spk, book, n, sec, text in utts:
                uid = f"{spk}_{book}_{n:06d}"
                f = d / "audio" / spk / book / f"{uid}.flac"
                f.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(f), np.zeros(int(16000 * sec), dtype=np.int16), 16000, format="FLAC")
                lines.append(f"{uid}\t{text}\n")
                segs.append(f"{uid}\thttp://x/{uid}.mp3\t10.0\t{10.0 + sec}\n")
            (d / "transcripts.txt").write_text("".join(lines), encoding="utf-8")
            if segments:
                (d / "segments.txt").write_text("".join(segs))
    return root


def run_data_sh(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(DATA_SH), "--python", sys.executable, *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def read_map(path: Path) -> dict:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        k, _, v = line.partition(" ")
        out[k] = v
    return out


def check_kaldi_dir(d: Path) -> dict:
    files = {f: d / f for f in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2lang")}
    for f in files.values():
        assert f.is_file(), f
        keys = [line.split(" ", 1)[0] for line in f.read_text(encoding="utf-8").splitlines()]
        assert keys == sorted(keys), f"{f} is not sorted"
        assert len(keys) == len(set(keys)), f"{f} has duplicate keys"
    wav, text, u2s, u2l = (read_map(files[f]) for f in ("wav.scp", "text", "utt2spk", "utt2lang"))
    assert set(wav) == set(text) == set(u2s) == set(u2l)
    for u, s in u2s.items():
        assert u.startswith(s + "_"), (u, s)  # Kaldi: utterance ids start with the speaker id
    s2u = {s: v.split() for s, v in read_map(files["spk2utt"]).items()}
    assert sorted(u for us in s2u.values() for u in us) == sorted(u2s)
    for s, us in s2u.items():
        assert all(u2s[u] == s for u in us)
    for u, p in wav.items():
        assert Path(p).is_absolute() and Path(p).is_file(), p
    assert set(u2l.values()) <= {"en", "it", "nl"}
    for u, lang in u2l.items():
        assert u.startswith(lang + "_")
    return {"wav": wav, "text": text, "utt2lang": u2l, "utt2spk": u2s}


def test_prepares_valid_kaldi_dirs(tmp_path):
    mls = make_mls(tmp_path / "mls")
    r = run_data_sh(tmp_path, "--mls_root", str(mls), "--langs", "english,it,dutch")
    assert r.returncode == 0, r.stderr
    for split in ("train", "dev", "test"):
        d = check_kaldi_dir(tmp_path / "data" / split)
        assert len(d["wav"]) == 10
        assert sorted(set(d["utt2lang"].values())) == ["en", "it", "nl"]
    d = check_kaldi_dir(tmp_path / "data" / "train")
    # normalised with espnet_pathways.text.normalize (lowercase, punctuation, clitics)
    assert d["text"]["en_100_200_000000"] == "hello world"
    assert d["text"]["en_100_200_000001"] == "it's fine"
    assert d["text"]["it_7_8_000000"] == "dell'aereo è partito"
    assert d["text"]["nl_55_66_000000"] == "'s avonds thuis"
    assert d["utt2spk"]["it_9_10_000001"] == "it_9"
    assert d["wav"]["en_101_300_000001"].endswith("mls_english/train/audio/101/300/101_300_000001.flac")
    import soundfile as sf
    assert sf.info(d["wav"]["it_7_8_000000"]).samplerate == 16000
    summary = (tmp_path / "data" / "local" / "corpus_summary.tsv").read_text().splitlines()
    assert summary[0] == "split\tlang\tutterances\tspeakers\thours"
    assert "train\tit\t4\t2\tn/a" in summary


@pytest.mark.parametrize("cap_by,expected", [
    # 4 x 1.5 s of Italian, cap 0.001 h = 3.6 s -> 2 utterances
    ("speaker", {"it_7_8_000000", "it_9_10_000000"}),  # one per speaker in turn
    ("utt", {"it_7_8_000000", "it_7_8_000001"}),       # id order
])
def test_hours_cap(tmp_path, cap_by, expected):
    mls = make_mls(tmp_path / "mls", segments=(cap_by == "utt"))
    r = run_data_sh(tmp_path, "--mls_root", str(mls), "--langs", "english,italian,dutch",
                    "--hours_cap", "it=0.001", "--cap_by", cap_by)
    assert r.returncode == 0, r.stderr
    train = check_kaldi_dir(tmp_path / "data" / "train")
    assert {u for u, l in train["utt2lang"].items() if l == "it"} == expected
    assert sum(1 for l in train["utt2lang"].values() if l == "en") == 4  # uncapped
    dev = check_kaldi_dir(tmp_path / "data" / "dev")
    assert sum(1 for l in dev["utt2lang"].values() if l == "it") == 4  # dev never capped
    summary = (tmp_path / "data" / "local" / "corpus_summary.tsv").read_text()
    assert "train\tit\t2\t" in summary
    # deterministic: the same call gives the same files
    first = (tmp_path / "data" / "train" / "wav.scp").read_text()
    r = run_data_sh(tmp_path, "--mls_root", str(mls), "--langs", "english,italian,dutch",
                    "--hours_cap", "it=0.001", "--cap_by", cap_by)
    assert r.returncode == 0 and (tmp_path / "data" / "train" / "wav.scp").read_text() == first


def test_missing_language_split_and_files_are_named(tmp_path):
    mls = make_mls(tmp_path / "mls")
    shutil.rmtree(mls / "mls_dutch" / "test")
    (mls / "mls_italian" / "dev" / "transcripts.txt").unlink()
    r = run_data_sh(tmp_path, "--mls_root", str(mls), "--langs", "english,italian,dutch,french")
    assert r.returncode != 0
    err = r.stderr
    assert f"language french: missing directory {mls / 'mls_french'}" in err
    assert f"language dutch: missing split directory {mls / 'mls_dutch' / 'test'}" in err
    assert f"language italian, split dev: missing file {mls / 'mls_italian' / 'dev' / 'transcripts.txt'}" in err
    assert not (tmp_path / "data" / "train").exists()  # nothing written on a broken tree

    # an audio file listed in transcripts.txt but absent: named with its path
    shutil.rmtree(mls / "mls_dutch")
    shutil.rmtree(mls / "mls_italian")
    gone = mls / "mls_english" / "train" / "audio" / "101" / "300" / "101_300_000001.flac"
    gone.unlink()
    r = run_data_sh(tmp_path, "--mls_root", str(mls), "--langs", "en")
    assert r.returncode != 0
    assert "language english, split train: 1 of 4 audio files" in r.stderr and str(gone) in r.stderr

    r = run_data_sh(tmp_path, "--langs", "en")
    assert r.returncode != 0 and "--mls_root is required" in r.stderr
    r = run_data_sh(tmp_path, "--mls_root", str(mls), "--langs", "klingon")
    assert r.returncode != 0 and "unknown MLS language 'klingon'" in r.stderr
    (mls / "mls_german_opus").mkdir()
    r = run_data_sh(tmp_path, "--mls_root", str(mls), "--langs", "german")
    assert r.returncode != 0 and "opus version" in r.stderr


def test_mls_configs_are_espnet_configs():
    """Every MLS config (the Emformer ones and the Conformer alternative in
    conf/tuning/conformer) parses with ASRPathwaysTask's parser (no unknown keys)."""
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    parser = ASRPathwaysTask.get_parser()
    known = {a.dest for a in parser._actions}
    names = ("train_dense", "train_dense_small", "prune_lsp", "prune_lap", "train_pathways")
    for name in names + tuple(f"tuning/conformer/{n}" for n in names):
        cfg = yaml.safe_load((RECIPE / "conf" / f"{name}.yaml").read_text())
        assert set(cfg) <= known, (name, sorted(set(cfg) - known))
        if cfg.get("encoder", "conformer") == "emformer":
            assert cfg["encoder_conf"]["subsampling_factor"] == 6, name
        else:
            assert name.startswith("tuning/conformer/"), name
            assert cfg["encoder_conf"]["input_conf"]["subsampling_factor"] == 6, name
        assert cfg["scheduler"] == "tristagelr" and cfg["optim_conf"]["lr"] == 0.001
        steps = cfg["max_epoch"] * cfg["num_iters_per_epoch"] // cfg.get("accum_grad", 1)
        assert cfg["scheduler_conf"]["max_steps"] == steps, name
    dec = yaml.safe_load((RECIPE / "conf" / "decode.yaml").read_text())
    assert dec["streaming"] and dec["decoding_window"] == 300


def test_slurm_runner_with_fake_sbatch(tmp_path):
    """utils/slurm.sh: JOB arrays, config options, per-job logs and failures."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "sbatch"
    # Runs every array task in turn, records its arguments; exit = worst task status.
    fake.write_text(
        "#!/usr/bin/env bash\n"
        "echo \"$@\" >> \"$SBATCH_LOG\"\n"
        "array=; for a in \"$@\"; do case $a in --array=*) array=${a#--array=};; esac; done\n"
        "script=${@: -1}; rc=0\n"
        "if [ -n \"$array\" ]; then r=${array%%%*}\n"
        "  for ((t=${r%-*}; t<=${r#*-}; t++)); do SLURM_ARRAY_TASK_ID=$t bash \"$script\" || rc=1; done\n"
        "else bash \"$script\" || rc=1; fi\nexit $rc\n")
    fake.chmod(0o755)
    conf = tmp_path / "slurm.conf"
    shutil.copy(RECIPE / "conf" / "slurm.conf", conf)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", SBATCH_LOG=str(tmp_path / "sbatch.args"))
    r = subprocess.run(
        ["bash", str(SLURM_SH), "--config", str(conf), "--gpu", "2", "--max_jobs_run", "2",
         "JOB=1:3", "log/dec.JOB.log", "bash", "-c", "echo task JOB > out.JOB.txt"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for j in (1, 2, 3):
        assert (tmp_path / f"out.{j}.txt").read_text().strip() == f"task {j}"
        assert "rc=0" in (tmp_path / "log" / f"dec.{j}.log").read_text()
    args = (tmp_path / "sbatch.args").read_text()
    assert "--wait" in args and "--array=1-3%2" in args and "--gres=gpu:2" in args and "-p gpu" in args

    r = subprocess.run(
        ["bash", str(SLURM_SH), "--config", str(conf), "JOB=1:2", "log/f.JOB.log",
         "bash", "-c", "exit $((JOB - 1))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "log/f.2.log" in r.stderr and "log/f.1.log" not in r.stderr

    # espnet2.bin.launch's multi-node form (no JOB=, the command starts with srun)
    r = subprocess.run(
        ["bash", str(SLURM_SH), "--config", str(conf), "--gpu", "8", "--num_threads", "8",
         "--num_nodes", "2", "log/train.log", "echo", "srun", "--export=ALL", "python"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    last = (tmp_path / "sbatch.args").read_text().splitlines()[-1]
    assert "--nodes 2 --ntasks-per-node=1" in last and "--array" not in last
    assert "srun --export=ALL python" in (tmp_path / "log" / "train.log").read_text()
