"""Embedded default corpus: Fish Fillets NG dialogue in en/fr/it/nl.

English, French and Italian are synthesised with free Debian TTS voices, Dutch
uses the game's recorded voice acting.  See ``docs/corpus.md`` and
``python -m espnet_pathways.bin.build_corpus --help``.
"""

from espnet_pathways.corpus.build import CorpusError, Options, build

__all__ = ["CorpusError", "Options", "build"]
