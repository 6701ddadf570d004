#!/usr/bin/env python3
"""GPU check of pathway training (run by ``benchmarks/gpu_check.sh``).

1. Trains a tiny pathway model (``tests/conf/train_tiny.yaml``) for ``--steps`` steps with
   AMP (float16 autocast + GradScaler on CUDA) under the trainer's masked update, and
   asserts that every mask lives on the weights' device and that no mask is copied in a
   forward (``mask.to(weight.device)`` is the mask itself, and the mask storages are the
   same after training as before).
2. Prints dense vs pathway step time (homogeneous and mixed batches) and peak allocated
   GPU memory at the configuration given by ``--config`` (default: the MLS recipe's
   paper-scale ``egs2/mls_pathways/asr1/conf/train_dense.yaml``; the architecture is
   read from it), with the paper's 1548-token vocabulary and ``--batch`` utterances of
   ``--seconds`` seconds.
3. Decodes a few utterances streaming (``PathwaySpeech2Text.decode_streaming_utterance``)
   with the tiny model and its pathways, and prints the real-time factor.

``--device cpu --tiny`` is a dry run of the same code on the CPU (the tiny config for
part 2 too, no AMP): the test suite runs it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import List, Optional

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pathway_step import LANGS, batches, build, overlapping_masks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "conf" / "train_tiny.yaml"
PAPER = ROOT / "egs2" / "mls_pathways" / "asr1" / "conf" / "train_dense.yaml"


def controller_for(model, opt, output_dir: str):
    from espnet_pathways.trainer import PathwayController

    opts = SimpleNamespace(output_dir=output_dir, resume=False, pruning="none",
                           pruning_languages=[], pruning_shared=False,
                           pruning_target_sparsity=0.7, pruning_fraction=0.2,
                           pruning_every=1, pruning_start=0, pruning_scope="global",
                           pruning_exclude=[], lth_rewind_step=0, mask_updates=True)
    return PathwayController(model, [opt], opts)


def with_pathways(model, swap: float = 0.05):
    from espnet_pathways.masks import prunable_parameter_names

    names = prunable_parameter_names(model)
    shapes = {n: p.shape for n, p in model.named_parameters() if n in names}
    model.set_pathway_masks(overlapping_masks(shapes, 0.7, swap))
    return model


def to_device(batch: dict, device: str) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class AmpStep:
    """One optimizer step as ESPnet does it with ``--use_amp true``."""

    def __init__(self, model, opt, device: str, amp: bool) -> None:
        self.model, self.opt, self.device, self.amp = model, opt, device, amp
        self.scaler = torch.amp.GradScaler(device, enabled=amp)

    def __call__(self, batch: dict) -> None:
        with torch.autocast(self.device, dtype=torch.float16, enabled=self.amp):
            loss, _, _ = self.model(**batch)
        self.scaler.scale(loss.sum()).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 100.0)
        self.scaler.step(self.opt)  # skipped on an overflow: the step hooks do not run
        self.scaler.update()
        self.opt.zero_grad()


def mask_tensors(model) -> List[torch.Tensor]:
    masks = model.pathway_masks
    return [m for lang in masks.languages for m in masks.for_language(lang).values()]


def check_tiny_training(device: str, steps: int, amp: bool, vocab: int) -> None:
    model = with_pathways(build(TINY, vocab).to(device))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    controller = controller_for(model, opt, tempfile.mkdtemp())
    params = dict(model.named_parameters())
    before = [m.data_ptr() for m in mask_tensors(model)]
    data = batches(4, 4, 1.0, vocab, homogeneous=False)
    step = AmpStep(model, opt, device, amp)
    t = time.perf_counter()
    for i in range(steps):
        step(to_device(data[i % len(data)], device))
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t
    masks = model.pathway_masks
    for lang in masks.languages:
        for name, m in masks.for_language(lang).items():
            p = params[name]
            assert m.device == p.device, f"mask {lang}/{name} on {m.device}, weight on {p.device}"
            assert m.to(p.device) is m, f"mask {lang}/{name} would be copied in a forward"
    assert [m.data_ptr() for m in mask_tensors(model)] == before, "masks were re-allocated"
    assert controller.step > 0, "every step was skipped"
    print(f"[1] tiny pathway model, {steps} steps on {device} (AMP {amp}): "
          f"{controller.step} updates ({steps - controller.step} skipped by GradScaler), "
          f"{elapsed / steps * 1000:.1f} ms/step; masks on {masks.for_language('en')[masks.param_names[0]].device}, "
          "never copied")
    controller.close()


def step_times(config: Path, device: str, amp: bool, vocab: int, batch: int,
               seconds: float, repeats: int) -> None:
    results = {}
    for variant in ("dense", "pathways-homogeneous", "pathways-mixed"):
        torch.manual_seed(0)
        model = build(config, vocab).to(device)
        n_params = sum(p.numel() for p in model.parameters())
        if variant != "dense":
            with_pathways(model)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        controller = None if variant == "dense" else controller_for(model, opt, tempfile.mkdtemp())
        data = [to_device(b, device) for b in
                batches(2, batch, seconds, vocab, homogeneous=variant != "pathways-mixed")]
        step = AmpStep(model, opt, device, amp)
        step(data[0])  # warm-up (allocator, cuDNN autotune)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(repeats):
            t = time.perf_counter()
            step(data[i % len(data)])
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        results[variant] = (statistics.median(times), peak)
        if controller is not None:
            controller.close()
        del model, opt, data, step
        if device == "cuda":
            torch.cuda.empty_cache()
    print(f"[2] {config.name}: {n_params / 1e6:.1f}M parameters, batch {batch} x {seconds}s, "
          f"vocab {vocab}, AMP {amp}, median of {repeats} steps on {device}")
    print(f"    {'variant':24s} {'step (s)':>9s} {'vs dense':>9s} {'peak alloc (GiB)':>17s}")
    dense = results["dense"][0]
    for v, (t, peak) in results.items():
        print(f"    {v:24s} {t:9.3f} {t / dense:9.3f} {peak:17.2f}")


def decode_streaming(device: str, vocab: int, n_utts: int) -> None:
    """Tiny pathway model written like an experiment directory, decoded chunk by chunk."""
    from espnet_pathways.inference import PathwaySpeech2Text
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    d = Path(tempfile.mkdtemp())
    parser = ASRPathwaysTask.get_parser()
    args = parser.parse_args(["--token_list", "none", "--output_dir", str(d)])
    for k, v in yaml.safe_load(TINY.read_text()).items():
        setattr(args, k, v)
    args.token_list = ["<blank>", "<unk>"] + [f"t{i}" for i in range(vocab - 3)] + ["<sos/eos>"]
    args.languages = LANGS
    torch.manual_seed(0)
    model = with_pathways(ASRPathwaysTask.build_model(args))
    torch.save(model.state_dict(), d / "model.pth")
    model.pathway_masks.save(d / "masks.pth")
    (d / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    s2t = PathwaySpeech2Text(asr_train_config=str(d / "config.yaml"),
                             asr_model_file=str(d / "model.pth"),
                             pathway_masks=str(d / "masks.pth"), streaming=True,
                             device=device, beam_size=2, decoding_window=320)
    rng = torch.Generator().manual_seed(0)
    audio = total = 0.0
    for i in range(n_utts):
        speech = (torch.randn(16000 * 2, generator=rng) * 0.1).numpy()
        t = time.perf_counter()
        hyps = s2t.decode_streaming_utterance(speech, lang=LANGS[i % len(LANGS)])
        total += time.perf_counter() - t
        audio += len(speech) / 16000
        assert hyps, "no hypothesis"
    print(f"[3] streaming decode of {n_utts} utterances on {device}: RTF {total / audio:.3f}")


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--config", type=Path, default=PAPER,
                   help="training config whose architecture is timed (part 2)")
    p.add_argument("--tiny", action="store_true",
                   help="dry run: the tiny config for part 2 as well, small batches")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--vocab", type=int, default=1548, help="the paper's merged vocabulary")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--utterances", type=int, default=3)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: CUDA is not available (use --device cpu --tiny for a dry run)")
    amp = args.device == "cuda"
    config, batch, seconds, vocab = args.config, args.batch, args.seconds, args.vocab
    if args.tiny:
        config, batch, seconds, vocab = TINY, 2, 1.0, 40
    check_tiny_training(args.device, args.steps, amp, 40)
    step_times(config, args.device, amp, vocab, batch, seconds, args.repeats)
    decode_streaming(args.device, 40, args.utterances)
    print("gpu_check: OK")


if __name__ == "__main__":
    main()
