"""Output vocabulary: one shared sentencepiece model, or per-language pieces merged.

* ``shared`` (default): one sentencepiece model trained on the pooled text of all
  languages; ESPnet tokenises with it on the fly (``token_type: bpe``).
* ``merged`` (the paper's variant): one sentencepiece model per language; their pieces
  are merged and de-duplicated into one output vocabulary.  Since the segmentation of an
  utterance depends on its language, the training text is segmented here, once, and
  ESPnet reads the pieces as words (``token_type: word``); hypotheses are turned back
  into text by :func:`pieces_to_text`.

Token lists follow ESPnet: ``<blank>`` first, ``<unk>`` second, ``<sos/eos>`` last.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Sequence

from espnet_pathways.fileio import atomic_write_text, read_two_columns

SPACE = "\u2581"  # sentencepiece's word-boundary mark
RESERVED_FIRST = ("<blank>", "<unk>")
RESERVED_LAST = ("<sos/eos>",)


def read_text(path: str | Path) -> Dict[str, str]:
    """Kaldi ``text``: ``uttid words ...`` (an empty transcript is an empty string);
    ESPnet's reader, errors naming the file (:func:`espnet_pathways.fileio.read_two_columns`)."""
    return {utt: words.strip() for utt, words in read_two_columns(path).items()}


def train_sentencepiece(
    sentences: Iterable[str], model_prefix: str | Path, vocab_size: int,
    model_type: str = "unigram", character_coverage: float = 1.0,
) -> Path:
    """Train a sentencepiece model; ``vocab_size`` is capped by what the text allows, and
    raised (with a warning) to what it needs: with ``character_coverage`` 1.0 a unigram or
    BPE model must hold every character of the text plus its 3 meta pieces, and a new
    language with more letters than ``--nbpe`` (Czech: 33 with the word boundary) would
    otherwise stop sentencepiece."""
    import sentencepiece as spm

    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    sentences = [s for s in sentences if s.strip()]
    if not sentences:
        raise ValueError(f"no text to train the sentencepiece model {prefix}")
    if model_type in ("unigram", "bpe") and character_coverage >= 1.0:
        chars = {c for s in sentences for c in s.strip() if not c.isspace()} | {SPACE}
        needed = len(chars) + 3  # <unk>, <s>, </s>
        if vocab_size < needed:
            logging.warning("%s: the text has %d distinct characters (word boundary included): "
                           "vocab_size raised from %d to %d", prefix, len(chars), vocab_size, needed)
            vocab_size = needed
    # Trained under a temporary prefix and moved into place: a failed run leaves an
    # earlier model as it was.
    with tempfile.TemporaryDirectory(prefix=f".{prefix.name}.", dir=prefix.parent) as tmp:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_prefix=str(Path(tmp) / prefix.name),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            input_sentence_size=100_000_000,
            hard_vocab_limit=False,  # a small corpus may not support vocab_size pieces
            unk_surface="<unk>",
            minloglevel=2,
        )
        for ext in (".vocab", ".model"):
            os.replace(Path(tmp) / f"{prefix.name}{ext}", prefix.with_name(prefix.name + ext))
    return prefix.with_name(prefix.name + ".model")


def model_pieces(model_file: str | Path) -> List[str]:
    """The pieces of a sentencepiece model, without its control/unknown symbols."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    return [
        sp.id_to_piece(i) for i in range(sp.get_piece_size())
        if not (sp.is_control(i) or sp.is_unknown(i))
    ]


def token_list(pieces: Sequence[str]) -> List[str]:
    """ESPnet token list around ``pieces`` (order kept, duplicates dropped)."""
    seen = set(RESERVED_FIRST) | set(RESERVED_LAST)
    body = []
    for p in pieces:
        if p not in seen:
            seen.add(p)
            body.append(p)
    return [*RESERVED_FIRST, *body, *RESERVED_LAST]


def write_lines(lines: Iterable[str], path: str | Path) -> None:
    """One line per item, written atomically (:func:`espnet_pathways.fileio.atomic_write_text`)."""
    atomic_write_text(path, "".join(f"{x}\n" for x in lines))


def make_shared(text: Mapping[str, str], out_dir: str | Path, vocab_size: int,
                model_type: str = "unigram") -> List[str]:
    """One sentencepiece model over all languages: ``out_dir/bpe.model`` + tokens."""
    out = Path(out_dir)
    model = train_sentencepiece(text.values(), out / "bpe", vocab_size, model_type)
    tokens = token_list(model_pieces(model))
    write_lines(tokens, out / "tokens.txt")
    logging.info("shared vocabulary: %d tokens (%s)", len(tokens), model)
    return tokens


def make_merged(text: Mapping[str, str], utt2lang: Mapping[str, str], out_dir: str | Path,
                vocab_size: int, model_type: str = "unigram") -> List[str]:
    """One sentencepiece model per language, pieces merged and de-duplicated.

    Writes ``out_dir/<lang>/bpe.model`` and ``out_dir/tokens.txt``.
    """
    out = Path(out_dir)
    by_lang: Dict[str, List[str]] = {}
    for utt, words in text.items():
        if utt not in utt2lang:
            raise KeyError(f"utterance {utt!r} has no utt2lang entry")
        by_lang.setdefault(utt2lang[utt], []).append(words)
    pieces: List[str] = []
    for lang in sorted(by_lang):
        model = train_sentencepiece(by_lang[lang], out / lang / "bpe", vocab_size, model_type)
        lang_pieces = model_pieces(model)
        logging.info("%s: %d pieces", lang, len(lang_pieces))
        pieces.extend(lang_pieces)
    tokens = token_list(pieces)
    write_lines(tokens, out / "tokens.txt")
    logging.info(
        "merged vocabulary: %d tokens from %d per-language pieces (%d shared)",
        len(tokens), len(pieces), len(pieces) - (len(tokens) - 3),
    )
    return tokens


def segment_merged(text: Mapping[str, str], utt2lang: Mapping[str, str],
                   model_dir: str | Path) -> Dict[str, str]:
    """Segment each utterance with its language's model: ``uttid piece piece ...``."""
    import sentencepiece as spm

    models: Dict[str, "spm.SentencePieceProcessor"] = {}
    out: Dict[str, str] = {}
    for utt, words in text.items():
        lang = utt2lang.get(utt)
        if lang is None:
            raise KeyError(f"utterance {utt!r} has no utt2lang entry")
        if lang not in models:
            path = Path(model_dir) / lang / "bpe.model"
            if not path.exists():
                raise FileNotFoundError(
                    f"no word-piece model for language {lang!r} ({path}); "
                    f"utterance {utt!r} cannot be segmented"
                )
            models[lang] = spm.SentencePieceProcessor(model_file=str(path))
        out[utt] = " ".join(models[lang].encode(words, out_type=str))
    return out


def pieces_to_text(pieces: Sequence[str]) -> str:
    """Join word pieces back into words (``['▁ab', 'c', '▁d'] -> 'abc d'``)."""
    return "".join(pieces).replace(SPACE, " ").strip()
