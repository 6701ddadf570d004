"""Embedded default corpus of the recipe: Fish Fillets NG dialogue in en/fr/it/nl (and cs).

English, French and Italian are synthesised with free Debian TTS voices and perturbed;
Dutch and Czech use the game's recorded voice acting; no voice is in two splits.
Modules: ``fillets`` (the game's dialogue and recordings), ``voices`` (voices, their
splits, perturbed speakers), ``tts`` (synthesis and perturbation), ``build`` (the
pipeline).  Run through ``local/data.sh`` (``local/build_corpus.py --help``); see
docs/corpus.md.  This is recipe data preparation, not part of the installed package.
"""
