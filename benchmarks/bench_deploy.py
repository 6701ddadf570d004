#!/usr/bin/env python3
"""Deployment figures: file size, CER/WER and streaming RTF of each system, fp32 vs int8.

For every system (an experiment dir) and language it prints, and writes as a TSV that
``make_results --deploy_table`` turns into RESULTS.md's deployment table:

* **size (MB)**: the ESPnet model zip (``asr_pathways_pack``; ESPnet's zip is stored, not
  compressed).  fp32: the system as it is packed by stage 15 (a pathway model: compact,
  all languages).  int8: what one ships for one language: a dense model's int8 file (all
  languages), a pathway model's exported pathway of that language in int8
  (``export_pathway --quantize_asr_model true``).  The fp32 size of that export is given
  too, and every int8 size as a fraction of the dense fp32 zip.
* **CER / WER (%)** with the project's scoring (:func:`espnet_pathways.reporting.scoring.score`, kaldialign counts) on
  the first ``--max_utts`` utterances of each language (every k-th of the set).
  fp32: the system (a pathway model decodes ``W * m_l``); int8: the int8 file above.  A
  pathway model quantized at load time (``--quantize_asr_model true``) decodes exactly
  like its int8 export (tests/test_quantize.py), so it is not decoded twice.
* **RTF**: streaming decoding time / audio duration, on ``--threads`` (1) thread.

    python benchmarks/bench_deploy.py --system dense=exp/asr_dense \
        --system pathways_imp=exp/asr_pathways_imp --data dump/raw/test \
        --langs en,fr,it,nl --max_utts 40 --work_dir exp/deploy --out exp/deploy/deploy.tsv

Run it from the recipe directory (the configs' paths are relative to it).
"""
from __future__ import annotations

import argparse
import csv
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

COLUMNS = [
    "system", "lang", "utts", "fp32_stored_as", "fp32_mb", "int8_stored_as", "int8_mb",
    "fp32_export_mb", "int8_vs_dense_fp32", "cer_fp32", "cer_int8", "wer_fp32", "wer_int8",
    "rtf_fp32", "rtf_int8",
]


def select_utts(utt2lang: Dict[str, str], lang: str, max_utts: int) -> List[str]:
    """Every k-th utterance of ``lang`` (sorted ids), at most ``max_utts``."""
    keys = sorted(k for k, v in utt2lang.items() if v == lang)
    step = max(1, len(keys) // max_utts) if max_utts > 0 else 1
    return keys[::step][:max_utts] if max_utts > 0 else keys


def decode(s2t, reader, keys: Sequence[str], lang: str) -> Tuple[Dict[str, str], float]:
    """Streaming-decode ``keys``; returns ``{utt: text}`` and the real-time factor."""
    hyps: Dict[str, str] = {}
    cpu = audio = 0.0
    for k in keys:
        rate, speech = reader[k]
        t = time.perf_counter()
        nbest = s2t.decode_streaming_utterance(speech, lang=lang)
        cpu += time.perf_counter() - t
        audio += len(speech) / rate
        hyps[k] = s2t.text(nbest)
    return hyps, cpu / audio if audio else float("nan")


def error_rates(ref: Dict[str, str], hyp: Dict[str, str]) -> Tuple[float, float]:
    from espnet_pathways.reporting.scoring import score

    refs = {k: ref[k] for k in hyp}
    return (score(refs, hyp, "char").counts().error_rate,
            score(refs, hyp, "word").counts().error_rate)


def speech2text(config: Path, model: Path, **kw: Any):
    from espnet_pathways.inference import PathwaySpeech2Text

    return PathwaySpeech2Text(asr_train_config=str(config), asr_model_file=str(model),
                              streaming=True, **kw)


def system_rows(
    name: str, exp_dir: Path, model_name: str, data: Path, langs: Sequence[str],
    max_utts: int, work_dir: Path, decode_kw: Dict[str, Any],
    quantize_modules: Sequence[str] = ("Linear", "LSTM"),
) -> List[Dict[str, Any]]:
    """Pack, quantize, export and decode one system; one row per language."""
    import yaml

    from espnet2.fileio.sound_scp import SoundScpReader

    from espnet_pathways.bin.export_pathway import export_pathway
    from espnet_pathways.fileio import read_two_columns
    from espnet_pathways.languages import read_utt2lang
    from espnet_pathways.packing import pack_model
    from espnet_pathways.quantize import file_size_mb, quantize_model_file

    config, model = exp_dir / "config.yaml", exp_dir / model_name
    for f in (config, model):
        if not f.exists():
            raise FileNotFoundError(f"system {name}: no {f}")
    masks = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("pathway_masks")
    out = work_dir / name
    out.mkdir(parents=True, exist_ok=True)
    fp32_zip = pack_model(config, model, out / "fp32.zip", compact=bool(masks))["outpath"]
    if not masks:
        int8_file = out / "model.int8.pth"
        quantize_model_file(config, model, int8_file, list(quantize_modules))
        int8_zip = pack_model(config, int8_file, out / "int8.zip")["outpath"]
        dense_int8 = speech2text(config, int8_file, **decode_kw)

    reader = SoundScpReader(str(data / "wav.scp"), dtype="float32")
    utt2lang = read_utt2lang(data / "utt2lang")
    ref = read_two_columns(data / "text")
    fp32 = speech2text(config, model, **decode_kw)
    rows = []
    for lang in langs:
        keys = select_utts(utt2lang, lang, max_utts)
        if not keys:
            logging.warning("%s: no %s utterances in %s; skipped", name, lang, data)
            continue
        row: Dict[str, Any] = {"system": name, "lang": lang, "utts": len(keys),
                               "fp32_mb": file_size_mb(fp32_zip)}
        if masks:
            exp_l = out / f"export_{lang}"
            export_pathway(str(config), str(model), lang, str(exp_l), quantize_asr_model=True,
                           quantize_modules=list(quantize_modules))
            row["fp32_stored_as"] = "pathway model, compact (all languages)"
            row["fp32_export_mb"] = file_size_mb(pack_model(
                exp_l / "config.yaml", exp_l / "model.pth", exp_l / "fp32.zip")["outpath"])
            row["int8_stored_as"] = f"exported {lang} pathway, int8"
            row["int8_mb"] = file_size_mb(pack_model(
                exp_l / "config.yaml", exp_l / "model.int8.pth", exp_l / "int8.zip")["outpath"])
            int8 = speech2text(exp_l / "config.yaml", exp_l / "model.int8.pth", **decode_kw)
        else:
            row["fp32_stored_as"] = "dense (all languages)"
            row["fp32_export_mb"] = None
            row["int8_stored_as"] = "dense int8 (all languages)"
            row["int8_mb"] = file_size_mb(int8_zip)
            int8 = dense_int8
        for tag, s2t in (("fp32", fp32), ("int8", int8)):
            hyp, rtf = decode(s2t, reader, keys, lang)
            row[f"cer_{tag}"], row[f"wer_{tag}"] = error_rates(ref, hyp)
            row[f"rtf_{tag}"] = rtf
        rows.append(row)
        logging.info("%s/%s: %s", name, lang, row)
    return rows


def fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) < 0.1 else f"{x:.3f}"
    return str(x)


def main(argv: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", action="append", required=True, metavar="NAME=EXP_DIR",
                   help="a system; repeat (a dense one first: the size reference)")
    p.add_argument("--data", type=Path, required=True, help="dir with wav.scp, text, utt2lang")
    p.add_argument("--langs", required=True, help="comma-separated languages")
    p.add_argument("--max_utts", type=int, default=40, help="utterances per language (0: all)")
    p.add_argument("--inference_model", default="latest.pth")
    p.add_argument("--reference_system", default=None,
                   help="the dense system whose fp32 zip the int8 sizes are compared with "
                        "(default: the first)")
    p.add_argument("--work_dir", type=Path, default=Path("exp/deploy"))
    p.add_argument("--out", type=Path, default=None, help="TSV to write (atomically)")
    p.add_argument("--quantize_modules", nargs="+", default=["Linear", "LSTM"],
                   help="torch.nn modules quantized to int8 (ESPnet's option)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--beam_size", type=int, default=4)
    p.add_argument("--decoding_window", type=int, default=640)
    p.add_argument("--log_level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    torch.set_num_threads(args.threads)
    systems = []
    for s in args.system:
        name, sep, d = s.partition("=")
        if not sep or not name or not d:
            p.error(f"--system {s!r}: expected NAME=EXP_DIR")
        systems.append((name, Path(d)))
    ref_name = args.reference_system or systems[0][0]
    langs = [x for x in args.langs.split(",") if x]
    decode_kw = {"beam_size": args.beam_size, "decoding_window": args.decoding_window}
    rows: List[Dict[str, Any]] = []
    for name, d in systems:
        rows += system_rows(name, d, args.inference_model, args.data, langs, args.max_utts,
                            args.work_dir, decode_kw, args.quantize_modules)
    dense_mb = next((r["fp32_mb"] for r in rows if r["system"] == ref_name), None)
    for r in rows:
        r["int8_vs_dense_fp32"] = r["int8_mb"] / dense_mb if dense_mb else None
    print(f"{args.max_utts or 'all'} utterances per language, {args.threads} thread(s), "
          f"beam {args.beam_size}, window {args.decoding_window} ms, int8: "
          f"{' '.join(args.quantize_modules)}; sizes in MB (zip)")
    print("\t".join(COLUMNS))
    for r in rows:
        print("\t".join(fmt(r.get(c)) for c in COLUMNS))
    if args.out is not None:
        from espnet_pathways.fileio import atomic_output

        with atomic_output(args.out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(COLUMNS)
            for r in rows:
                w.writerow(["" if r.get(c) is None else r.get(c) for c in COLUMNS])
    return rows


if __name__ == "__main__":
    main()
