"""Parse the Fish Fillets NG dialogue scripts (Debian ``fillets-ng-data``).

Each level has ``script/<level>/dialogs_<lang>.lua`` made of calls like::

    dialogId("let-m-divna", "font_small", "<English text>")
    dialogStr("<translated text>")          -- only in non-English files

Calls may span lines and strings use Lua escapes (``\\"``, ``\\\\``).  Calls built
with Lua expressions (``dialogId("key"..i, "", "")``) are not literal and are
ignored by the regex.  The dialogue key is ``(level, id)`` because ids repeat
across levels.  Czech, the game's original language, is stored like a translation
(``dialogs_cs.lua`` with ``dialogStr``; ``dialogs.lua`` only loads the language file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

FILLETS_ROOT = Path("/usr/share/games/fillets-ng")

Key = Tuple[str, str]  # (level, dialogue id)

_STR = r'"((?:[^"\\]|\\.)*)"'
_DIALOG_RE = re.compile(
    r"dialogId\(\s*" + _STR + r"\s*,\s*" + _STR + r"\s*,\s*" + _STR + r"\s*\)"
    r"(?:\s*dialogStr\(\s*" + _STR + r"\s*\))?",
    re.DOTALL,
)
_LUA_ESCAPES = {"n": " ", "t": " ", '"': '"', "'": "'", "\\": "\\"}


@dataclass(frozen=True)
class Dialog:
    """One line of dialogue in one language (``english`` is the original)."""

    level: str
    id: str
    text: str
    english: str

    @property
    def key(self) -> Key:
        return (self.level, self.id)


def unescape(s: str) -> str:
    """Decode the Lua string escapes that occur in the scripts."""
    return re.sub(r"\\(.)", lambda m: _LUA_ESCAPES.get(m.group(1), m.group(1)), s)


def parse_dialogs(source: str, level: str, lang: str) -> List[Dialog]:
    """Parse one ``dialogs_<lang>.lua`` file's content.

    For English the text is the 3rd ``dialogId`` argument; for other languages
    it is the following ``dialogStr`` (entries without one are dropped, they are
    untranslated).  Later duplicates of an id within a file are ignored.
    """
    out: Dict[str, Dialog] = {}
    for m in _DIALOG_RE.finditer(source):
        did, _font, english, translated = m.groups()
        if not did or did in out:
            continue
        text = english if lang == "en" else translated
        if text is None:
            continue
        out[did] = Dialog(level, did, unescape(text).strip(), unescape(english).strip())
    return list(out.values())


def load_language(lang: str, root: Path = FILLETS_ROOT) -> Dict[Key, Dialog]:
    """All dialogue lines of ``lang`` keyed by (level, id), from every level."""
    files = sorted((root / "script").glob(f"*/dialogs_{lang}.lua"))
    if not files:
        raise FileNotFoundError(
            f"no {root}/script/*/dialogs_{lang}.lua found (is fillets-ng-data installed?)"
        )
    result: Dict[Key, Dialog] = {}
    for f in files:
        for d in parse_dialogs(f.read_text(encoding="utf-8"), f.parent.name, lang):
            result[d.key] = d
    return result


def recording(key: Key, lang: str, root: Path = FILLETS_ROOT) -> Path:
    """Path of the game's recorded utterance of a dialogue key in ``lang`` (nl from
    ``fillets-ng-data-nl``, cs from ``fillets-ng-data-cs``); it may not exist."""
    return root / "sound" / key[0] / lang / f"{key[1]}.ogg"


def character(dialog_id: str) -> str:
    """Character code of a dialogue id, used as the speaker of a recording.

    Ids look like ``<level-abbr>-<char>-<name>`` (``let-m-divna``: m = small
    fish, v = big fish); two-field ids (``m-uvedomit``) start with the
    character; anything else is ``other``.
    """
    parts = dialog_id.split("-")
    code = parts[1] if len(parts) >= 3 else parts[0] if len(parts) == 2 else ""
    code = re.sub(r"[^A-Za-z0-9]", "", code)
    return code or "other"
