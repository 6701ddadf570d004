"""Reporting, apart from the method: scoring (WER/CER), ``RESULTS.md`` and plots.

* :mod:`~espnet_pathways.reporting.scoring`: asr.sh-style score directories, counted by
  sclite (sctk) or, without it, kaldialign in sclite mode;
* :mod:`~espnet_pathways.reporting.results`: ``RESULTS.md`` from the score files;
* :mod:`~espnet_pathways.reporting.plots`: mask-overlap, sparsity and error-rate figures.

Their command lines are the thin ``espnet_pathways.bin.score``, ``make_results`` and
``make_plots``.  Nothing in the method (masks, pruning, model, training, inference)
imports this subpackage.
"""
