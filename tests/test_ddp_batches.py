"""Language-homogeneous batches under DDP: every rank's dataset holds its batches' keys.

ESPnet builds a rank's dataset from that rank's share of *its own* batches
(``keys_to_load``); ``ASRPathwaysTask`` replaces the batches with language-homogeneous
ones, so it must rebuild the dataset for them.  Before it did, a 2-rank pathway training
stopped at its first step with a KeyError (an utterance the rank never loaded).

The ranks are simulated (``get_world_size``/``get_rank`` patched): the iterator factory is
built as rank 0 and rank 1 of 2, and every utterance of every batch is read through it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch

UTTS = {"en": [f"en-{i}" for i in range(6)], "nl": [f"nl-{i}" for i in range(6)]}


def tiny_data(d: Path) -> Path:
    d.mkdir()
    wav = d / "wav"
    wav.mkdir()
    rng = np.random.default_rng(0)
    lines = {"wav.scp": [], "text": [], "utt2lang_id": [], "shape": []}
    for i, (lang, utts) in enumerate(UTTS.items()):
        for j, u in enumerate(utts):
            n = 1600 + 400 * j  # lengths differ: the batches are packed by length
            soundfile.write(wav / f"{u}.wav", rng.standard_normal(n).astype("float32") * 0.1,
                            16000)
            lines["wav.scp"].append(f"{u} {wav / f'{u}.wav'}")
            lines["text"].append(f"{u} a b")
            lines["utt2lang_id"].append(f"{u} {i}")
            lines["shape"].append(f"{u} {n}")
    for name, rows in lines.items():
        (d / name).write_text("\n".join(sorted(rows)) + "\n")
    (d / "category2utt").write_text("".join(f"{k} {' '.join(v)}\n" for k, v in UTTS.items()))
    return d


def as_ids(uid: str, data: dict) -> dict:
    """The preprocessor's part that matters here: text to an array (ESPnet requires it).
    The "text" type matters too: its reader is the one that loads only ``keys_to_load``."""
    return dict(data, text=np.array([ord(c) for c in data["text"]]))


def rank_keys(data: Path, rank: int, monkeypatch) -> list:
    """Every utterance id that rank ``rank`` of 2 reads in three epochs, each a new draw
    (read through the factory's dataset, so an id it did not load raises)."""
    from espnet2.tasks.abs_task import IteratorOptions

    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *a, **k: rank)
    args = ASRPathwaysTask.get_parser().parse_args(
        ["--language_batches", "homogeneous", "--seed", "3"])
    opts = IteratorOptions(
        preprocess_fn=as_ids, collate_fn=None,
        data_path_and_name_and_type=[(str(data / "wav.scp"), "speech", "sound"),
                                     (str(data / "text"), "text", "text"),
                                     (str(data / "utt2lang_id"), "lang", "text_int")],
        shape_files=[str(data / "shape")], batch_size=4, batch_bins=12000, batch_type="numel",
        max_cache_size=0.0, max_cache_fd=32, allow_multi_rates=False, distributed=True,
        num_batches=None, num_iters_per_epoch=None, train=True)
    factory = ASRPathwaysTask.build_sequence_iter_factory(args, opts, "train")
    seen = []
    batches = [b for epoch in (1, 2, 3) for b in factory.sampler.generate(epoch + args.seed)]
    for batch in batches:
        for uid in batch:
            key, item = factory.dataset[uid]  # KeyError for a key the rank did not load
            assert key == uid and "speech" in item
            seen.append(uid)
    return seen


def test_each_rank_reads_its_share_of_the_language_homogeneous_batches(tmp_path, monkeypatch):
    data = tiny_data(tmp_path / "train")
    r0, r1 = rank_keys(data, 0, monkeypatch), rank_keys(data, 1, monkeypatch)
    assert r0 and r1 and not set(r0) & set(r1)  # the two ranks share each batch out
    every = {u for us in UTTS.values() for u in us}
    assert set(r0) | set(r1) <= every and len(set(r0) | set(r1)) >= 0.8 * len(every)
