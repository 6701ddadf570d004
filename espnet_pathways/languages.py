"""Language ids: the one place that maps language codes to the integers the model sees.

The recipe's language list (``--languages en fr it nl``) fixes the order; utterance
``u`` of language ``l`` reaches the model as ``lang = languages.index(l)`` through the
``utt2lang_id`` (``text_int``) data file.  Every lookup that can fail names the utterance
or code at fault, because a silent wrong id would train the wrong pathway.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Sequence

from espnet_pathways.fileio import atomic_write_text, read_two_columns


class UnknownLanguageError(ValueError):
    """A language code that is not in the configured language list."""


def check_languages(languages: Sequence[str]) -> List[str]:
    """Validate a configured language list (non-empty, unique, simple codes)."""
    langs = list(languages or [])
    if not langs:
        raise ValueError("the language list is empty: give e.g. --languages en fr it nl")
    dup = sorted({x for x in langs if langs.count(x) > 1})
    if dup:
        raise ValueError(f"languages listed twice: {dup}")
    for code in langs:
        if not code or any(c.isspace() for c in code):
            raise ValueError(f"invalid language code {code!r}")
    return langs


def lang_to_id(lang: str, languages: Sequence[str], where: str = "") -> int:
    """Return the integer id of ``lang``; unknown codes raise naming ``where``."""
    try:
        return list(languages).index(lang)
    except ValueError:
        at = f" ({where})" if where else ""
        raise UnknownLanguageError(
            f"unknown language {lang!r}{at}; known languages: {' '.join(languages)}"
        ) from None


def check_mask_languages(mask_languages: Sequence[str], languages: Sequence[str],
                         masks_file: str = "the pathway masks") -> None:
    """Masks may only name configured languages: the rule of training
    (``PathwayTransducerModel.set_pathway_masks``) and of inference alike."""
    unknown = [lang for lang in mask_languages if lang not in languages]
    if unknown:
        raise UnknownLanguageError(
            f"{masks_file}: the masks have pathways for language(s) {' '.join(unknown)}, "
            f"which the model does not know (its languages: {' '.join(languages)}); "
            "use the masks made for this model"
        )


def read_utt2lang(path: str | Path) -> Dict[str, str]:
    """Read a Kaldi-style ``utt2lang`` file (``uttid lang``); errors name the file."""
    out = read_two_columns(path)
    for utt, lang in out.items():
        if not lang or len(lang.split()) != 1:
            raise ValueError(f"{path}: utterance {utt}: expected 'uttid lang', "
                             f"got language {lang!r}")
    return out


def write_utt2lang_id(
    utt2lang: Dict[str, str], languages: Sequence[str], path: str | Path,
    utts: Iterable[str] | None = None,
) -> None:
    """Write ``utt2lang_id`` (``uttid int``) for ``utts`` (default: all, sorted)."""
    keys = sorted(utt2lang) if utts is None else list(utts)
    lines = []
    for u in keys:
        if u not in utt2lang:
            raise KeyError(f"utterance {u!r} has no utt2lang entry")
        lines.append(f"{u} {lang_to_id(utt2lang[u], languages, f'utterance {u}')}\n")
    atomic_write_text(path, "".join(lines))
