"""Language ids: the one place that maps language codes to the integers the model sees.

The recipe's language list (``--languages en fr it nl``) fixes the order; utterance
``u`` of language ``l`` reaches the model as ``lang = languages.index(l)`` through the
``utt2lang_id`` (``text_int``) data file.  Every lookup that can fail names the utterance
or code at fault, because a silent wrong id would train the wrong pathway.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Sequence


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


def read_utt2lang(path: str | Path) -> Dict[str, str]:
    """Read a Kaldi-style ``utt2lang`` file (``uttid lang``)."""
    out: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise ValueError(f"{path}:{n}: expected 'uttid lang', got {line.rstrip()!r}")
            out[parts[0]] = parts[1]
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
    Path(path).write_text("".join(lines), encoding="utf-8")
