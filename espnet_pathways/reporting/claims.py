"""The "paper claims" table of RESULTS.md: each claim of the paper, our numbers, a paired
test, and a verdict by a fixed rule.

Why a rule in code: a verdict written by hand drifts from the numbers; this one is
recomputed with them on every run.  The rule (also in docs/results.md):

* significance: the p-value of record is sctk's MAPSSWE (``sc_stats``) when sctk is
  installed, else the paired bootstrap's; "significant" means p < 0.05 (:data:`ALPHA`);
* a claim "A is better than B" (relative difference (A - B) / B of the average WER over
  the claim's languages, negative = A better):

  - **not reproduced** if B is significantly better, or if the paper's number is out of
    reach: the whole 95 % bootstrap interval is above it (A's gain is significantly
    smaller than the paper's);
  - without a paired test (no ``ref.trn``/``hyp.trn``): inconclusive;
  - **reproduced** if A is significantly better and the paper's number is not out of
    reach (claims without a number: A significantly better);
  - **inconclusive** otherwise;
* "A is at least as good as B at less compute" (dynamic vs fixed pathways): not reproduced
  if A used more steps or is significantly worse; reproduced if it used fewer steps and
  its WER is not higher; inconclusive if higher but not significantly, or compute is n/a;
* "LSP masks are language-specific" has no test: the mean pairwise IoU of the LSP masks is
  set against the IoU of independent random masks of the same sparsities, as the share
  ``(1 - IoU) / (1 - IoU_random)`` of the way from identical (0) to independent (1)
  masks: reproduced from :data:`SPECIFIC_AT`, not reproduced below :data:`SHARED_BELOW`.

A system absent from the run gives a "not run" row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

from espnet_pathways.reporting.compute_table import Compute
from espnet_pathways.reporting.significance import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    BootstrapResult,
    ScoredSet,
    check_paired,
    load_scored,
    paired_bootstrap,
    paired_errors,
)

logger = logging.getLogger(__name__)

NA = "n/a"
NOT_RUN = "not run"
ALPHA = 0.05
SPECIFIC_AT = 0.5
SHARED_BELOW = 0.25
#: "pathways" in a claim is the better (lower average WER) of these systems.
PATHWAY_SYSTEMS = ("pathways_imp", "pathways_dynamic")
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


@dataclass(frozen=True)
class Claim:
    """One claim: ``system`` vs ``baseline`` on ``langs`` (None: all languages).

    ``target``: the paper's relative difference in % (negative = system better), None for
    a direction-only claim; ``kind``: "better" or "as_good_less_compute".
    """

    text: str
    paper: str
    system: str
    baseline: str
    langs: Optional[Tuple[str, ...]] = None
    target: Optional[float] = None
    kind: str = "better"


def paper_claims(dense: str, low_resource: Sequence[str]) -> List[Claim]:
    """The paper's claims (Yang et al. 2023; Xie et al. 2023 for dynamic pathways)."""
    claims = [
        Claim("pathways beat dense", "-5.0 % rel. avg WER", "pathways", dense, target=-5.0),
        Claim("pathways beat dense given the same extra steps (dense_ft)", "-5.0 % rel. avg WER",
              "pathways", "dense_ft", target=-5.0),
        Claim("pathways beat LAP", "-21.4 % rel. avg WER", "pathways", "lap", target=-21.4),
    ]
    claims += [Claim(f"pathways beat LSP on {lang} (lower-resource)", "better", "pathways",
                     "lsp_imp", langs=(lang,)) for lang in low_resource]
    claims += [
        Claim("random-mask pathways beat LAP", "better", "pathways_random", "lap"),
        Claim("dynamic pathways at least as good as fixed, at less compute",
              "as good, less compute", "pathways_dynamic", "pathways_imp",
              kind="as_good_less_compute"),
    ]
    return claims


@dataclass
class ClaimResult:
    """Everything one row of the table shows."""

    claim: Claim
    system: str
    ours: str = NA
    rel_diff: Optional[float] = None
    p_mapsswe: Optional[float] = None
    boot: Optional[BootstrapResult] = None
    verdict: str = INCONCLUSIVE
    note: str = ""

    @property
    def p(self) -> Optional[float]:
        """The p-value of record: MAPSSWE when sctk ran, else the bootstrap's."""
        if self.p_mapsswe is not None:
            return self.p_mapsswe
        return self.boot.p_value if self.boot is not None else None


def average(wer: Mapping[str, Optional[float]], langs: Sequence[str]) -> Optional[float]:
    vals = [wer.get(lang) for lang in langs]
    if not vals or any(v is None for v in vals):
        return None
    return float(np.mean(vals))


def resolve_pathways(wer: Mapping[str, Mapping[str, Optional[float]]], langs: Sequence[str],
                     exp_dirs: Mapping[str, Path], epoch: str = "last") -> Optional[str]:
    """The pathway system that stands for "pathways" in the claims, chosen on dev.

    Among the pathway systems run and scored: the one with the lowest dev loss (ESPnet's
    validation loss in its ``checkpoint.pth``) at the epoch that is decoded: ``epoch``
    ``last`` (the recipe's default ``latest.pth``: every schedule's length is chosen on
    dev) or ``best`` (``--inference_model valid.loss.best.pth``).  Never the test set.
    Systems whose dev loss cannot be read are left out (with a warning); if none can be,
    the first in :data:`PATHWAY_SYSTEMS` order (the paper's fixed pathways) stands.
    """
    from espnet_pathways.dev_selection import dev_loss

    scored = [s for s in PATHWAY_SYSTEMS if s in wer and s in exp_dirs
              and average(wer[s], langs) is not None]
    if len(scored) <= 1:
        return scored[0] if scored else None
    losses = []
    for s in scored:
        d = Path(exp_dirs[s])
        try:
            losses.append((dev_loss(d, epoch), s))
        except (OSError, ValueError) as e:
            logger.warning("%s: no dev loss to choose the pathway system on (%s)", s, e)
    return min(losses)[1] if losses else scored[0]


def verdict_better(rel: float, p: Optional[float], boot: Optional[BootstrapResult],
                   target: Optional[float]) -> str:
    """The rule of the module docstring for "system better than baseline" claims."""
    sig = p is not None and p < ALPHA
    if rel > 0 and sig:
        return NOT_REPRODUCED
    if target is not None and boot is not None and boot.ci_low > target:
        return NOT_REPRODUCED
    if rel < 0 and sig:
        return REPRODUCED
    return INCONCLUSIVE


def verdict_as_good(rel: float, p: Optional[float], steps: Optional[int],
                    base_steps: Optional[int]) -> Tuple[str, str]:
    """(verdict, note) for "as good at less compute" claims."""
    if steps is None or base_steps is None:
        return INCONCLUSIVE, "compute n/a"
    note = f"steps {steps} vs {base_steps}"
    if steps >= base_steps or (rel > 0 and p is not None and p < ALPHA):
        return NOT_REPRODUCED, note
    return (REPRODUCED if rel <= 0 else INCONCLUSIVE), note


def evaluate(
    claim: Claim,
    exp_dirs: Mapping[str, Path],
    wer: Mapping[str, Mapping[str, Optional[float]]],
    langs: Sequence[str],
    decode_dir: str,
    computes: Mapping[str, Compute],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    pathways: Optional[str] = None,
) -> ClaimResult:
    """One claim's row; "not run" when a system is absent, n/a when its scores are.
    ``pathways``: the system that stands for "pathways" (:func:`resolve_pathways`, which
    reads checkpoints: resolved here only when not given)."""
    if claim.system == "pathways" and pathways is None:
        pathways = resolve_pathways(wer, langs, exp_dirs)
    langs = [lang for lang in (claim.langs or langs) if lang in langs]
    system = pathways if claim.system == "pathways" else claim.system
    shown = system or claim.system
    res = ClaimResult(claim, shown)
    absent = [s for s in (system, claim.baseline) if s is None or s not in exp_dirs]
    if absent or not langs:
        res.verdict = NOT_RUN
        res.note = "not run: " + ", ".join(s or " / ".join(PATHWAY_SYSTEMS) for s in absent)
        return res
    assert system is not None
    a, b = average(wer[system], langs), average(wer[claim.baseline], langs)
    if a is None or b is None:
        res.note = "scores missing"
        return res
    res.ours = f"{a:.1f} vs {b:.1f}"
    res.rel_diff = 100.0 * (a - b) / b if b else None
    sets_a: List[ScoredSet] = []
    sets_b: List[ScoredSet] = []
    for lang in langs:
        sa = load_scored(exp_dirs[system] / decode_dir / f"test_{lang}" / "score_wer", lang)
        sb = load_scored(exp_dirs[claim.baseline] / decode_dir / f"test_{lang}" / "score_wer", lang)
        if sa is None or sb is None:
            res.note = f"no ref.trn/hyp.trn for {lang}: no test"
            sets_a = []
            break
        check_paired(sa, sb, system, claim.baseline)
        sets_a.append(sa)
        sets_b.append(sb)
    if sets_a:
        try:
            pe = paired_errors(sets_a, sets_b)
        except (RuntimeError, OSError) as e:  # sctk itself failed: say so, keep the table
            logger.warning("claim %r: no paired test: %s", claim.text, e)
            res.note = f"paired test failed: {e}"[:200]
        else:
            res.boot = paired_bootstrap(pe.errs_a, pe.errs_b, pe.nref, resamples=resamples, seed=seed)
            res.p_mapsswe = pe.mapsswe[1] if pe.mapsswe is not None else None
    if res.rel_diff is None:
        res.note = res.note or "baseline WER is 0"
        return res
    ca, cb = computes.get(system), computes.get(claim.baseline)
    steps_a, steps_b = (ca.steps if ca else None), (cb.steps if cb else None)
    if claim.kind == "as_good_less_compute":
        res.verdict, note = verdict_as_good(res.rel_diff, res.p, steps_a, steps_b)
    else:
        # the compute behind the comparison, so "better" can be read against "more steps"
        note = f"steps {steps_a} vs {steps_b}" if steps_a is not None and steps_b is not None else ""
        if res.p is None:
            res.verdict = INCONCLUSIVE  # no paired test: the numbers alone decide nothing
        else:
            res.verdict = verdict_better(res.rel_diff, res.p, res.boot, claim.target)
    res.note = "; ".join(x for x in (res.note, note) if x)
    return res


def chance_iou(sparsity_a: float, sparsity_b: float) -> float:
    """Expected IoU of two independent random masks keeping ``1 - sparsity`` each."""
    ka, kb = 1.0 - sparsity_a, 1.0 - sparsity_b
    union = ka + kb - ka * kb
    return ka * kb / union if union else 0.0


def mask_specificity(overlap: Optional[Mapping[str, object]]) -> Optional[Tuple[float, float, float]]:
    """(mean pairwise IoU, mean chance IoU, specificity) of an overlap.json, or None."""
    if not overlap:
        return None
    iou = overlap.get("iou")
    sparsity = overlap.get("sparsity")
    langs = list(overlap.get("languages") or (iou or {}))  # type: ignore[arg-type]
    if not isinstance(iou, dict) or not isinstance(sparsity, dict) or len(langs) < 2:
        return None
    ious, chances, specs = [], [], []
    for i, a in enumerate(langs):
        for b in langs[i + 1:]:
            try:
                v = float(iou[a][b])
                c = chance_iou(float(sparsity[a]), float(sparsity[b]))
            except (KeyError, TypeError, ValueError):
                return None
            ious.append(v)
            chances.append(c)
            specs.append((1.0 - v) / (1.0 - c) if c < 1 else 0.0)
    return float(np.mean(ious)), float(np.mean(chances)), float(np.mean(specs))


def fmt_p(p: Optional[float]) -> str:
    if p is None:
        return NA
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def claims_rows(
    results: Sequence[ClaimResult], overlap: Optional[Mapping[str, object]]
) -> Tuple[List[str], List[List[str]]]:
    """Header and rows of the claims table (the masks claim last)."""
    header = ["Claim", "Paper", "Ours: system vs baseline", "Avg WER", "Rel. diff",
              "p (MAPSSWE)", "p (bootstrap)", "95 % CI (bootstrap)", "Verdict", "Note"]
    rows = []
    for r in results:
        c = r.claim
        on = f" on {', '.join(c.langs)}" if c.langs else ""
        rows.append([
            c.text, c.paper, f"{r.system} vs {c.baseline}{on}", r.ours,
            NA if r.rel_diff is None else f"{r.rel_diff:+.1f} %",
            fmt_p(r.p_mapsswe), fmt_p(r.boot.p_value if r.boot else None),
            f"[{r.boot.ci_low:+.1f}, {r.boot.ci_high:+.1f}] %" if r.boot else NA,
            r.verdict, r.note,
        ])
    spec = mask_specificity(overlap)
    if spec is None:
        rows.append(["LSP masks are language-specific", "language-specific", "lsp_imp masks",
                     NA, NA, NA, NA, NA, NOT_RUN, "no mask overlap file"])
    else:
        iou, chance, s = spec
        verdict = REPRODUCED if s >= SPECIFIC_AT else NOT_REPRODUCED if s < SHARED_BELOW else INCONCLUSIVE
        rows.append(["LSP masks are language-specific", "language-specific", "lsp_imp masks",
                     f"mean IoU {iou:.3f} (random masks {chance:.3f})", NA, "no test", "no test",
                     NA, verdict, f"specificity {s:.2f} (0 identical, 1 independent)"])
    return header, rows


def evaluate_all(
    claims: Sequence[Claim], exp_dirs: Mapping[str, Path],
    wer: Mapping[str, Mapping[str, Optional[float]]], langs: Sequence[str], decode_dir: str,
    computes: Mapping[str, Compute], resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
    pathways: Optional[str] = None,
) -> List[ClaimResult]:
    """Every claim's row; "pathways" resolved once (given, or :func:`resolve_pathways`)."""
    if pathways is None:
        pathways = resolve_pathways(wer, langs, exp_dirs)
    out = []
    for c in claims:
        r = evaluate(c, exp_dirs, wer, langs, decode_dir, computes, resamples, seed, pathways)
        logger.info("claim %r: %s vs %s, rel %s, p %s -> %s", c.text, r.system, c.baseline,
                    NA if r.rel_diff is None else f"{r.rel_diff:+.1f} %", fmt_p(r.p), r.verdict)
        out.append(r)
    return out

