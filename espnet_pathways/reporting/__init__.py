"""Reporting, apart from the method: scoring (WER/CER), ``RESULTS.md`` and plots.

* :mod:`~espnet_pathways.reporting.scoring`: asr.sh-style score directories, counted by
  sclite (sctk) or, without it, kaldialign in sclite mode;
* :mod:`~espnet_pathways.reporting.results`: ``RESULTS.md`` from the score files, with
  :mod:`~espnet_pathways.reporting.compute_table` (training steps per system and language),
  :mod:`~espnet_pathways.reporting.significance` (sctk's MAPSSWE, paired bootstrap) and
  :mod:`~espnet_pathways.reporting.claims` (the paper-claims table and its verdict rule);
* :mod:`~espnet_pathways.reporting.mask_overlap`: mask overlap/IoU per layer group, mask drift;
* :mod:`~espnet_pathways.reporting.plots`: mask-overlap, sparsity, drift and error-rate figures.

Their command lines are the thin ``espnet_pathways.bin.score``, ``make_results`` and
``make_plots``.  Nothing in the method (masks, pruning, model, training, inference)
imports this subpackage.
"""
