"""Per-language transcript normalisation shared by the corpus builder and scoring.

``normalize(text, lang)`` produces the text that ASR is trained and scored on:

1. Unicode NFC, so that "é" is always one code point whatever the source used.
2. Lowercase (``str.lower``), because case is not audible.
3. Typographic apostrophes (’ ‘ ʼ ´ `) become ``'``.
4. Accents are KEPT: they are part of French/Italian/Dutch spelling, and Czech letters
   (á č ď é ě í ň ó ř š ť ú ů ý ž) are letters like any other: the rules below treat
   every Unicode letter (category L*/M*) as a word character, in every language.
5. Apostrophes survive only inside a word (``l'avion``, ``dell'aereo``,
   ``don't``); leading/trailing ones are dropped.  Exception for Dutch: the
   clitics ``'t 's 'n 'k`` keep their leading apostrophe (``'s avonds``),
   because there the apostrophe is part of the word.
6. Hyphens (and other dashes) become spaces (``peut-être`` -> ``peut être``),
   so that hyphenation variants do not count as word errors.
7. Every other non-letter character (punctuation, quotes, symbols) becomes a
   space; whitespace is then collapsed and stripped.

Lines the TTS engines would read in a way the transcript cannot express are
skipped instead of normalised (``skip_reason``): digits (TTS reads "3" as
"three"/"trois"/"tre", so the words would be missing from the transcript) and
symbols that are pronounced (``\\ / @ & % + = ...``: espeak says "slash").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Optional

SUPPORTED_LANGS = ("en", "fr", "it", "nl", "cs")

_APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc\u00b4`"})
# Symbols a TTS engine reads aloud ("slash", "at", "percent") -> skip the line.
_SPOKEN_SYMBOLS = set("\\/@#%&*+=<>_|~$\u20ac\u00a3\u00a7\u00b0^")
_NL_CLITICS = ("'t", "'s", "'n", "'k")


def _is_letter(ch: str) -> bool:
    """Letters and combining marks (category L*/M*) are word characters."""
    return unicodedata.category(ch)[0] in "LM"


def has_digits(text: str) -> bool:
    """True if the text contains any decimal digit (Unicode ``Nd``)."""
    return any(unicodedata.category(c) == "Nd" for c in text)


def skip_reason(text: str) -> Optional[str]:
    """Why a source line must not be used for TTS/ASR, or None if it is fine."""
    if has_digits(text):
        return "digits"
    if any(c in _SPOKEN_SYMBOLS for c in text):
        return "symbols"
    return None


def _word_apostrophes(word: str, lang: str) -> str:
    """Keep only word-internal apostrophes (plus Dutch clitics, see module doc)."""
    if lang == "nl" and word in _NL_CLITICS:
        return word
    return word.strip("'")


def normalize(text: str, lang: str) -> str:
    """Normalise ``text`` of language ``lang`` as described in the module doc."""
    if lang not in SUPPORTED_LANGS:
        raise ValueError(f"unsupported language {lang!r}; supported: {', '.join(SUPPORTED_LANGS)}")
    text = unicodedata.normalize("NFC", text).lower().translate(_APOSTROPHES)
    chars = [c if (_is_letter(c) or c == "'") else " " for c in text]
    words = (_word_apostrophes(w, lang) for w in "".join(chars).split())
    # A word may now contain "''" or be empty ("'" alone); squeeze and drop.
    words = (re.sub("'+", "'", w) for w in words)
    return " ".join(w for w in words if w.strip("'"))


def tts_text(text: str) -> str:
    """Text given to the TTS engines: the source line with only prosody-relevant
    punctuation (. , ; : ! ?) kept, so the audio matches ``normalize`` output but
    still has phrase breaks; quotes/brackets/dashes become spaces."""
    text = unicodedata.normalize("NFC", text).translate(_APOSTROPHES)
    keep = set(".,;:!?'")
    out = "".join(c if (_is_letter(c) or c in keep) else " " for c in text)
    return " ".join(out.split())
