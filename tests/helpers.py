"""Tiny models and batches shared by the tests (built through ASRPathwaysTask), and
:func:`fails`, the check of a tool's clean failure on bad input."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Dict, Sequence

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "tests" / "conf" / "train_tiny.yaml"
LANGS = ["en", "fr", "it", "nl"]
TOKENS = ["<blank>", "<unk>"] + list("abcdefghijklmnopqrstuvwxyz") + ["<space>", "<sos/eos>"]


def tiny_args(**overrides) -> argparse.Namespace:
    """Parse the tiny test config with ASRPathwaysTask's own parser."""
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    parser = ASRPathwaysTask.get_parser()
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    args = parser.parse_args(["--token_list", "none", "--output_dir", "unused"])
    for k, v in cfg.items():
        setattr(args, k, v)
    args.token_list = list(TOKENS)
    args.token_type = "char"
    args.languages = list(LANGS)
    args.specaug = None  # deterministic forward for gradient comparisons
    args.model_conf = dict(args.model_conf)
    args.model_conf["auxiliary_ctc_weight"] = 0.0
    args.encoder_conf["main_conf"]["dynamic_chunk_training"] = False
    for k, v in overrides.items():
        setattr(args, k, v)
    return args


def tiny_model(seed: int = 0, **overrides):
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    torch.manual_seed(seed)
    model = ASRPathwaysTask.build_model(tiny_args(**overrides))
    for m in model.modules():  # no dropout: identical forwards for comparisons
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def tiny_batch(langs: Sequence[int], seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random audio (0.5-0.8 s) and random character targets, one utterance per lang id."""
    g = torch.Generator().manual_seed(seed)
    n = len(langs)
    lengths = torch.randint(8000, 12800, (n,), generator=g)
    speech = torch.randn(n, int(lengths.max()), generator=g) * 0.1
    text_lengths = torch.randint(3, 7, (n,), generator=g)
    text = torch.full((n, int(text_lengths.max())), -1, dtype=torch.long)
    for i, u in enumerate(text_lengths):
        text[i, :u] = torch.randint(2, 28, (int(u),), generator=g)
    return {
        "speech": speech,
        "speech_lengths": lengths,
        "text": text,
        "text_lengths": text_lengths,
        "lang": torch.tensor(langs, dtype=torch.long).view(-1, 1),
        "lang_lengths": torch.ones(n, dtype=torch.long),
    }


def subset(batch: Dict[str, torch.Tensor], idx: Sequence[int]) -> Dict[str, torch.Tensor]:
    ix = torch.tensor(list(idx))
    return {k: v[ix] for k, v in batch.items()}


def fails(main: Callable, argv: Sequence[str], capsys) -> str:
    """Run a bin as ``python -m`` does; assert a clean failure; return its error line."""
    from espnet_pathways.bin._cli import run

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run(main, list(argv))
    err = capsys.readouterr().err
    assert e.value.code not in (0, None), err
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert ": error: " in line, err
    return line


def snapshot_files(d: Path) -> Dict[str, bytes]:
    """Every file under ``d`` (relative name -> bytes): what a failed rerun must keep."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(Path(d).rglob("*"))
            if p.is_file()}


def write_dev_losses(exp_dir: Path, losses: Sequence[float]) -> Path:
    """``exp_dir/checkpoint.pth`` holding only an ESPnet reporter that saw these per-epoch
    dev losses (what :func:`espnet_pathways.dev_selection.dev_loss` reads)."""
    from espnet2.train.reporter import Reporter

    reporter = Reporter()
    for epoch, loss in enumerate(losses, start=1):
        reporter.set_epoch(epoch)
        with reporter.observe("valid") as sub:
            sub.register({"loss": torch.tensor(loss)})
            sub.next()
    exp_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"reporter": reporter.state_dict()}, exp_dir / "checkpoint.pth")
    return exp_dir


def fake_recipe(tmp_path: Path, fake_python: str) -> Path:
    """A scratch recipe directory that runs the real pathways.sh with ``--python`` pointed
    at ``fake_python`` (a bash script standing in for a Python entry point), for tests of
    the stage wiring that must not start real trainings or decodings."""
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    for name in ("conf", "egs2", "path.sh", "cmd.sh"):
        (recipe / name).symlink_to(ROOT / name)
    (recipe / "fake_python").write_text(fake_python)
    (recipe / "fake_python").chmod(0o755)
    return recipe
