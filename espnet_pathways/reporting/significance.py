"""Paired significance tests of two systems on the same test utterances.

Why: a few hundred test utterances per language leave differences of a few percent inside
the noise; a claim "A is better than B" needs a paired test on the same utterances.

Two tests, both on the word-level score directories of the scoring stage
(``<exp>/<decode_dir>/test_<lang>/score_wer/{ref,hyp}.trn``, the units sclite scored):

* **MAPSSWE** (NIST's matched-pair sentence-segment word error test), run by sctk's own
  ``sc_stats`` on sclite's ``sgml`` alignments of the two systems, exactly as NIST
  benchmarks do (``sclite -o sgml``, then ``sc_stats -p -t mapsswe -v``).  Its p-value is
  the two-tailed normal tail of sc_stats' Z statistic.  It tests the word errors of the
  pooled utterances.
* **Paired bootstrap** over utterances (numpy, fixed seed) of the per-utterance word
  errors (sclite's, from the same sgml alignments; kaldialign's without sclite):
  utterances are resampled with replacement *within each language* (the test set's
  language mix is fixed by design), the same draw for both systems; the statistic is the
  relative difference of the unweighted average over languages of the corpus WERs (the
  paper's metric).  It gives
  the 95 % percentile interval of that relative difference and a two-sided p-value from
  the bootstrap distribution shifted to the null (Efron & Tibshirani 1993, sec. 16.4).
  It is also the p-value of record when sctk is not installed.

Both systems must have been scored on the same utterances with the same references; if not,
:class:`PairingError` names the utterances that differ.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from espnet_pathways.reporting.scoring import align, find_sclite, find_sctk_tool

#: Debian's sctk puts sc_stats beside sclite (``/usr/bin/sctk`` is only a dispatcher).
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0

_TRN_LINE = re.compile(r"^(.*)\(([^()]*)\)\s*$")
_MAPSSWE = re.compile(r"MTCH_PR_RESULTS.*\(Z Stat:\s*([-+0-9.eEnaNinf]+)\)")


class PairingError(ValueError):
    """The two systems were not scored on the same utterances / references."""


def find_sc_stats() -> Optional[str]:
    """``$SC_STATS``, PATH, beside the sclite in use, then Debian's sctk location."""
    sclite = find_sclite()
    return find_sctk_tool("sc_stats", "SC_STATS",
                          [str(Path(sclite).with_name("sc_stats"))] if sclite else [])


# --------------------------------------------------------------------------- inputs
def read_trn(path: Path) -> Dict[str, List[str]]:
    """``{id: tokens}`` of a sclite ``trn`` file (``tok tok ... (id)``), in file order."""
    out: Dict[str, List[str]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        m = _TRN_LINE.match(line)
        if not m:
            raise ValueError(f"{path}:{lineno}: not a trn line ('tokens (id)'): {line[:80]!r}")
        uid = m.group(2)
        if uid in out:
            raise ValueError(f"{path}:{lineno}: duplicate utterance {uid!r}")
        out[uid] = m.group(1).split()
    return out


@dataclass
class ScoredSet:
    """One system's word-level scoring of one language: references and hypotheses."""

    lang: str
    ref: Dict[str, List[str]]
    hyp: Dict[str, List[str]]
    score_dir: Path


def load_scored(score_dir: Path, lang: str) -> Optional[ScoredSet]:
    """``ref.trn``/``hyp.trn`` of a score directory; None if it has none."""
    ref, hyp = score_dir / "ref.trn", score_dir / "hyp.trn"
    if not ref.is_file() or not hyp.is_file():
        return None
    r, h = read_trn(ref), read_trn(hyp)
    if list(r) != list(h):
        raise ValueError(f"{score_dir}: ref.trn and hyp.trn list different utterances")
    return ScoredSet(lang, r, h, score_dir)


def _preview(ids: Sequence[str], k: int = 5) -> str:
    more = f" ... (+{len(ids) - k} more)" if len(ids) > k else ""
    return ", ".join(ids[:k]) + more


def check_paired(a: ScoredSet, b: ScoredSet, name_a: str, name_b: str) -> None:
    """Refuse to compare systems scored on different utterances or references."""
    only_a = [u for u in a.ref if u not in b.ref]
    only_b = [u for u in b.ref if u not in a.ref]
    if only_a or only_b:
        raise PairingError(
            f"language {a.lang}: {name_a} and {name_b} were scored on different utterances "
            f"(only {name_a}: {_preview(only_a) or '-'}; only {name_b}: {_preview(only_b) or '-'}); "
            "rescore both on the same test set"
        )
    diff = [u for u in a.ref if a.ref[u] != b.ref[u]]
    if diff:
        raise PairingError(
            f"language {a.lang}: {name_a} and {name_b} have different references for "
            f"{_preview(diff)}; rescore both with the same data"
        )


def utterance_errors(s: ScoredSet) -> Tuple[np.ndarray, np.ndarray]:
    """Per utterance (file order): word errors (S+D+I, sclite's costs) and reference words."""
    errs, nref = [], []
    for uid, ref in s.ref.items():
        errs.append(sum(1 for p in align(ref, s.hyp[uid]) if p.op != "C"))
        nref.append(len(ref))
    return np.asarray(errs, dtype=np.int64), np.asarray(nref, dtype=np.int64)


# --------------------------------------------------------------------------- sclite / MAPSSWE
def _trn(ref: Mapping[str, List[str]]) -> str:
    return "".join(f"{' '.join(toks)} ({uid})\n" for uid, toks in ref.items())


def sclite_sgml(sclite: str, work: Path, sysname: str, ref: Mapping[str, List[str]],
                hyp: Mapping[str, List[str]]) -> str:
    """sclite's ``sgml`` alignment report of ``hyp`` against ``ref`` (run in ``work``)."""
    (work / "ref.trn").write_text(_trn(ref), encoding="utf-8")
    (work / f"{sysname}.trn").write_text(_trn(hyp), encoding="utf-8")
    proc = subprocess.run(
        [sclite, "-r", "ref.trn", "trn", "-h", f"{sysname}.trn", "trn", sysname,
         "-i", "rm", "-e", "utf-8", "-s", "-o", "sgml", "stdout"],
        cwd=work, capture_output=True, text=True, encoding="utf-8",
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sclite -o sgml failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
    return proc.stdout


_PATH = re.compile(r'<PATH id="\(([^"]*)\)"[^>]*>\n?(.*?)</PATH>', re.S)
_ITEM = re.compile(r'([CSDIU]),(?:"(?:[^"]|"")*")?,(?:"(?:[^"]|"")*")?')


def sgml_errors(sgml: str) -> Dict[str, int]:
    """Word errors (S + D + I) per utterance id in sclite's sgml alignments.

    Why: sclite's alignments are the ones of record (score.json); kaldialign splits
    equal-cost alignments differently, which can change an utterance's error count.
    """
    return {uid: sum(1 for m in _ITEM.finditer(body) if m.group(1) in "SDI")
            for uid, body in _PATH.findall(sgml)}


@dataclass
class PairedErrors:
    """Per-language, per-utterance word errors of two systems (same order) and ref words;
    ``mapsswe`` is sc_stats' (Z, p) when sctk is installed; ``scorer`` made the counts."""

    errs_a: List[np.ndarray]
    errs_b: List[np.ndarray]
    nref: List[np.ndarray]
    mapsswe: Optional[Tuple[float, float]]
    scorer: str


def paired_errors(
    sets_a: Sequence[ScoredSet], sets_b: Sequence[ScoredSet],
    sclite: Optional[str] = None, sc_stats: Optional[str] = None,
) -> PairedErrors:
    """Per-utterance errors of both systems, and MAPSSWE on their pooled utterances.

    With sclite, the errors are sclite's (its sgml alignments, the ones sc_stats reads);
    without it, kaldialign's.  With sc_stats too, MAPSSWE's Z and two-tailed p (the
    normal tail of Z; identical outputs give Z = 0, p = 1).  The sets must be paired
    already (:func:`check_paired`).
    """
    sclite = sclite or find_sclite()
    sc_stats = sc_stats or find_sc_stats()
    nref = [np.asarray([len(t) for t in s.ref.values()], dtype=np.int64) for s in sets_a]
    if not sclite:
        return PairedErrors([utterance_errors(s)[0] for s in sets_a],
                            [utterance_errors(s)[0] for s in sets_b], nref, None, "kaldialign")
    ref: Dict[str, List[str]] = {}
    hyps: Tuple[Dict[str, List[str]], Dict[str, List[str]]] = ({}, {})
    for a, b in zip(sets_a, sets_b):
        clash = [u for u in a.ref if u in ref]
        if clash:
            raise PairingError(f"utterance id(s) {_preview(clash)} occur in two languages' test sets")
        ref.update(a.ref)
        hyps[0].update(a.hyp)
        hyps[1].update(b.hyp)
    with tempfile.TemporaryDirectory(prefix="mapsswe.") as tmp:
        work = Path(tmp)
        sgml = [sclite_sgml(sclite, work, name, ref, hyp) for name, hyp in zip(("sysA", "sysB"), hyps)]
        per_utt = [sgml_errors(x) for x in sgml]
        lost = [u for u in ref if u not in per_utt[0] or u not in per_utt[1]]
        if lost:
            raise RuntimeError(f"sclite's sgml lacks utterance(s) {_preview(lost)}")
        z_p = mapsswe(sc_stats, work, sgml) if sc_stats else None
    errs = [[np.asarray([e[u] for u in s.ref], dtype=np.int64) for s in sets_a] for e in per_utt]
    return PairedErrors(errs[0], errs[1], nref, z_p, "sclite")


def mapsswe(sc_stats: str, work: Path, sgml: Sequence[str]) -> Tuple[float, float]:
    """(Z, two-tailed p) of ``sc_stats -t mapsswe`` on two systems' sgml reports."""
    out = work / "stats"
    out.mkdir(exist_ok=True)
    proc = subprocess.run(
        [sc_stats, "-p", "-t", "mapsswe", "-v", "-O", str(out), "-n", "cmp"],
        input="".join(sgml), cwd=work, capture_output=True, text=True, encoding="utf-8",
    )
    report = "".join(p.read_text(encoding="utf-8", errors="replace") for p in out.glob("*mapsswe*"))
    m = _MAPSSWE.search(report)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"sc_stats gave no MAPSSWE result ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    z = float(m.group(1))
    if not math.isfinite(z):
        return z, 1.0
    return z, math.erfc(abs(z) / math.sqrt(2.0))


# --------------------------------------------------------------------------- bootstrap
@dataclass(frozen=True)
class BootstrapResult:
    """Relative difference (A - B) / B of the unweighted-average WER, in %, with its
    95 % percentile interval and the two-sided bootstrap p-value."""

    rel_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    resamples: int


#: Resamples drawn at once: bounds memory to CHUNK x utterances of one language.
CHUNK = 250


def _avg_wer(errs: Sequence[np.ndarray], nref: Sequence[np.ndarray]) -> np.ndarray:
    """Unweighted mean over languages of corpus WER; arrays (..., n_l) -> (...)."""
    rates = [e.sum(axis=-1) / np.maximum(n.sum(axis=-1), 1) for e, n in zip(errs, nref)]
    return np.mean(rates, axis=0)


def paired_bootstrap(
    errs_a: Sequence[np.ndarray], errs_b: Sequence[np.ndarray], nref: Sequence[np.ndarray],
    resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
) -> Optional[BootstrapResult]:
    """Paired, language-stratified bootstrap of the relative average-WER difference.

    ``errs_*[l]`` and ``nref[l]`` are per-utterance arrays of language ``l`` (same order
    for both systems).  None when B's average WER is 0 (no relative difference exists).
    """
    base_a, base_b = float(_avg_wer(errs_a, nref)), float(_avg_wer(errs_b, nref))
    if base_b == 0:
        return None
    rng = np.random.default_rng(seed)
    wa, wb = np.empty(resamples), np.empty(resamples)
    for start in range(0, resamples, CHUNK):
        k = min(CHUNK, resamples - start)
        ra, rb = np.zeros(k), np.zeros(k)
        for ea, eb, n in zip(errs_a, errs_b, nref):
            idx = rng.integers(0, len(n), size=(k, len(n)))  # the same draw for A and B
            words = np.maximum(n[idx].sum(axis=1), 1)
            ra += ea[idx].sum(axis=1) / words
            rb += eb[idx].sum(axis=1) / words
        wa[start:start + k], wb[start:start + k] = ra / len(nref), rb / len(nref)
    rel = 100.0 * (wa - wb) / np.where(wb > 0, wb, np.nan)
    rel = rel[np.isfinite(rel)]
    observed = 100.0 * (base_a - base_b) / base_b
    low, high = np.percentile(rel, [2.5, 97.5])
    # Shift the bootstrap distribution to the null (d* - d_observed) and count the draws
    # at least as far from it as the observed difference is from 0.
    extreme = np.abs(rel - observed) >= abs(observed) - 1e-9
    p = (1 + int(extreme.sum())) / (1 + rel.size)
    return BootstrapResult(observed, float(low), float(high), min(1.0, p), int(rel.size))
