"""WER/CER scoring into ESPnet ``asr.sh``-style score directories, by sctk or kaldialign.

ESPnet reports error rates by tokenising the Kaldi ``text`` files into sclite ``trn``
files and running NIST ``sclite``; this module does the same with well-kept tools only:

* tokenisation is ESPnet's own (``WordTokenizer`` / ``CharTokenizer`` with ``<space>``,
  after ``tokenize_text -f 2-``'s re-joining of the fields), so the units are asr.sh's;
* the counts of record come from **sclite's own report** (sctk, installed by the recipe's
  ``setup.sh``): ``result.txt`` is ``sclite -o all`` as in ``asr.sh`` and ``score.json``
  holds its ``Sum`` row; ``alignment.txt`` is sclite's ``pra`` report;
* without sclite, the counts come from **kaldialign** in sclite mode (``align(...,
  sclite_mode=True)``: sclite's costs, sub 4 / ins 3 / del 3, as icefall uses it).  Its
  backtrace splits equal-cost alignments differently from sclite's (more substitutions
  for sclite, more insertions and deletions for kaldialign) in 1-2 % of word utterances
  and more often over characters: up to 0.1 absolute WER/CER on a realistic test set
  (``tests/test_scoring.py``).  So ``score.json`` says which scorer made it
  (``"scorer"``), the log warns, and published numbers should be sclite's.

Every file of a score directory is computed first and then moved into place
(:func:`espnet_pathways.fileio.atomic_write_text`), ``score.json`` last, under the
directory's lock: a run that fails leaves the previous complete ``score.json`` as it was,
and a second run writing the same directory at the same time is refused.

Comparison is case-sensitive (sclite ``-s``): sclite's case folding only folds ASCII
(``Café`` == ``café`` but ``À`` != ``à``); casing is normalised in data preparation.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from espnet_pathways.fileio import atomic_write_text, exclusive_lock, read_two_columns

if TYPE_CHECKING:
    from espnet2.text.abs_tokenizer import AbsTokenizer

logger = logging.getLogger(__name__)

UNITS: Tuple[str, ...] = ("word", "char")
#: ESPnet's CharTokenizer space symbol (espnet2/text/char_tokenizer.py).
SPACE_SYMBOL = "<space>"
#: kaldialign's gap symbol: no token is empty (words are whitespace-split, chars are one
#: character), so the empty string never collides with a real token.
GAP = ""

#: Where Debian's ``sctk`` package puts the real binary (``/usr/bin/sctk`` is a
#: dispatching wrapper and there is no ``sclite`` on PATH).
SCLITE_CANDIDATES = ("/usr/lib/sctk/bin/sclite",)

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------
# Reading and tokenising
# --------------------------------------------------------------------------
def read_text(path: PathLike) -> Dict[str, str]:
    """A Kaldi ``text`` file (``uttid words...``) in file order, via ESPnet's reader.

    A line with only an id is an empty transcript (kept, as ``""``): dropping it would
    silently shrink the test set.  Duplicate ids are an error naming the file.
    """
    return read_two_columns(path)


@functools.lru_cache(maxsize=None)
def espnet_tokenizer(unit: str) -> AbsTokenizer:
    """ESPnet's tokenizer of ``unit`` as ``asr.sh``'s scoring builds it."""
    from espnet2.text.char_tokenizer import CharTokenizer
    from espnet2.text.word_tokenizer import WordTokenizer

    if unit == "word":
        return WordTokenizer()
    if unit == "char":
        return CharTokenizer(space_symbol=SPACE_SYMBOL)
    raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")


def tokenize(text: str, unit: str) -> List[str]:
    """Scoring units as ``asr.sh`` makes them, with ESPnet's tokenizers.

    ``tokenize_text -f 2-`` re-joins the whitespace-split fields with single spaces, so
    runs of whitespace collapse before the char tokenizer maps each space to ``<space>``.
    """
    return espnet_tokenizer(unit).text2tokens(" ".join(text.split()))


# --------------------------------------------------------------------------
# Alignment (kaldialign) and counts
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class AlignedPair:
    """One alignment column: ``op`` is C(orrect), S(ub), D(el) or I(ns)."""

    ref: Optional[str]
    hyp: Optional[str]
    op: str


def align(ref: Sequence[str], hyp: Sequence[str]) -> List[AlignedPair]:
    """Minimum-cost alignment with sclite's costs (kaldialign, ``sclite_mode=True``).

    Plain unit-cost Levenshtein gives the same *total* in most cases but can split it
    differently (two substitutions vs. a deletion + insertion); sclite's costs make the
    sub/del/ins breakdown sclite's.
    """
    import kaldialign

    pairs = []
    for r, h in kaldialign.align(list(ref), list(hyp), GAP, sclite_mode=True):
        if r == GAP:
            pairs.append(AlignedPair(None, h, "I"))
        elif h == GAP:
            pairs.append(AlignedPair(r, None, "D"))
        else:
            pairs.append(AlignedPair(r, h, "C" if r == h else "S"))
    return pairs


def _rate(num: int, den: int) -> float:
    """Percentage; 0 errors over 0 tokens is 0 %, errors over 0 tokens is inf."""
    if den == 0:
        return 0.0 if num == 0 else math.inf
    return 100.0 * num / den


@dataclass(frozen=True)
class ErrorCounts:
    """Corpus totals of one score directory, and which scorer made them."""

    unit: str
    n_utt: int
    n_ref: int
    cor: int
    sub: int
    dele: int
    ins: int
    n_sent_err: int
    scorer: str
    missing: Tuple[str, ...] = ()

    @property
    def err(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def error_rate(self) -> float:
        return _rate(self.err, self.n_ref)

    @property
    def sentence_error_rate(self) -> float:
        return _rate(self.n_sent_err, self.n_utt)

    @property
    def metric(self) -> str:
        return "WER" if self.unit == "word" else "CER"

    def to_dict(self) -> Dict[str, object]:
        """The ``score.json`` payload (non-finite rates become ``null``)."""

        def fin(x: float) -> Optional[float]:
            return round(x, 4) if math.isfinite(x) else None

        return {
            "unit": self.unit,
            "n_utt": self.n_utt,
            "n_ref": self.n_ref,
            "cor": self.cor,
            "sub": self.sub,
            "del": self.dele,
            "ins": self.ins,
            "err": self.err,
            "error_rate": fin(self.error_rate),
            "sentence_error_rate": fin(self.sentence_error_rate),
            "missing": len(self.missing),
            "missing_utts": list(self.missing),
            "scorer": self.scorer,
        }

    def summary(self) -> str:
        """One log line, e.g. ``WER 23.45 % (N=1234, sub/del/ins=10/5/3, ...)``."""
        return (
            f"{self.metric} {self.error_rate:.2f} % (N={self.n_ref}, "
            f"sub/del/ins={self.sub}/{self.dele}/{self.ins}, utts={self.n_utt}, "
            f"SER {self.sentence_error_rate:.2f} %, missing={len(self.missing)}, "
            f"by {self.scorer})"
        )


@dataclass
class UttScore:
    """Tokens and alignment of one utterance."""

    uttid: str
    ref: List[str]
    hyp: List[str]
    pairs: List[AlignedPair]
    missing_hyp: bool = False

    def count(self, op: str) -> int:
        return sum(1 for p in self.pairs if p.op == op)


@dataclass
class ScoreResult:
    """Tokenised, aligned utterances of one scoring run (file order kept)."""

    unit: str
    utts: List[UttScore] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)

    def counts(self) -> ErrorCounts:
        """Totals of the kaldialign alignments."""
        c, s, d, i = (sum(u.count(op) for u in self.utts) for op in "CSDI")
        return ErrorCounts(
            unit=self.unit,
            n_utt=len(self.utts),
            n_ref=sum(len(u.ref) for u in self.utts),
            cor=c, sub=s, dele=d, ins=i,
            n_sent_err=sum(1 for u in self.utts if u.count("C") != len(u.pairs)),
            scorer="kaldialign",
            missing=tuple(self.missing),
        )


def _preview(ids: Iterable[str], k: int = 10) -> str:
    ids = list(ids)
    more = f" ... (+{len(ids) - k} more)" if len(ids) > k else ""
    return ", ".join(ids[:k]) + more


def score(ref: Mapping[str, str], hyp: Mapping[str, str], unit: str = "word") -> ScoreResult:
    """Tokenise and align hypotheses against references (both ``uttid -> transcript``).

    * A reference without a hypothesis is scored as an empty hypothesis (all deletions)
      so a crashed decoding job cannot make WER look better; it is logged and listed in
      ``ScoreResult.missing``.
    * A hypothesis without a reference is an error: it means the wrong data directory was
      scored, and silently ignoring it would hide that.
    * No reference at all is an error: an empty test set has no error rate.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if not ref:
        raise ValueError("no reference utterances to score")
    extra = [u for u in hyp if u not in ref]
    if extra:
        raise ValueError(
            f"{len(extra)} hypothesis utterance(s) have no reference (hypotheses of "
            f"another data directory?): {_preview(extra)}"
        )
    result = ScoreResult(unit=unit)
    for uttid, ref_text in ref.items():
        trn_id(uttid)  # refuse ids sclite cannot read before anything is written
        missing = uttid not in hyp
        if missing:
            result.missing.append(uttid)
        r = tokenize(ref_text, unit)
        h = tokenize(hyp.get(uttid, ""), unit)
        result.utts.append(UttScore(uttid, r, h, align(r, h), missing_hyp=missing))
    if result.missing:
        logger.warning(
            "%d reference utterance(s) have no hypothesis; scored as all deletions: %s",
            len(result.missing),
            _preview(result.missing),
        )
    return result


def restrict_to_language(
    ref: Mapping[str, str], hyp: Mapping[str, str], utt2lang: Mapping[str, str], lang: str
) -> Tuple[Dict[str, str], Dict[str, str]]:
    """References of ``lang`` and the hypotheses of those same utterances.

    Why: per-language test sets can be scored from one decoding of a pooled test set.
    Hypotheses with no reference at all are kept so that :func:`score` still reports them
    (they mean a mismatched data directory).
    """
    unknown: List[str] = [u for u in ref if u not in utt2lang]
    if unknown:
        raise ValueError(
            f"{len(unknown)} reference utterance(s) have no language in utt2lang: {_preview(unknown)}"
        )
    keep_ref = {u: t for u, t in ref.items() if utt2lang[u] == lang}
    if not keep_ref:
        langs = sorted(set(utt2lang[u] for u in ref))
        raise ValueError(f"no reference utterances of language {lang!r}; present: {langs}")
    keep_hyp = {u: t for u, t in hyp.items() if u in keep_ref or u not in ref}
    return keep_ref, keep_hyp


# --------------------------------------------------------------------------
# Score directory (asr.sh layout)
# --------------------------------------------------------------------------
def trn_id(uttid: str) -> str:
    """The id written inside ``(...)`` of a trn line.

    ``sclite -i rm`` derives the speaker from the text before the first ``-`` (else the
    first ``_``); an id with neither makes sclite print ``extract_speaker can't locate RM
    id`` and file the utterance under the previous speaker.  Such ids get a ``nospk-``
    prefix (ESPnet itself writes ``spk-uttid``); all others are written unchanged.
    """
    if any(c in uttid for c in "() \t"):
        raise ValueError(f"utterance id {uttid!r} cannot be written to a trn file")
    if "-" in uttid or "_" in uttid:
        return uttid
    return f"nospk-{uttid}"


def trn_text(result: ScoreResult, side: str) -> str:
    """``tok tok ... (id)`` lines for ``side`` in {"ref", "hyp"}."""
    lines = []
    for u in result.utts:
        toks = u.ref if side == "ref" else u.hyp
        # An empty transcript gives " (id)", which sclite reads as zero tokens.
        lines.append(f"{' '.join(toks)} ({trn_id(u.uttid)})\n")
    return "".join(lines)


def format_alignment(pairs: Sequence[AlignedPair]) -> Tuple[str, str, str]:
    """REF/HYP/Eval rows like sclite's ``-o pra`` (case-sensitive mode).

    Gaps are ``*`` runs as wide as the opposite token so columns line up.
    """
    refs: List[str] = []
    hyps: List[str] = []
    evals: List[str] = []
    for p in pairs:
        r = p.ref if p.ref is not None else "*" * len(p.hyp or "")
        h = p.hyp if p.hyp is not None else "*" * len(p.ref or "")
        w = max(len(r), len(h), 1)
        refs.append(r.ljust(w))
        hyps.append(h.ljust(w))
        evals.append(("" if p.op == "C" else p.op).ljust(w))
    return " ".join(refs), " ".join(hyps), " ".join(evals)


def alignment_text(result: ScoreResult) -> str:
    """Per-utterance alignment report in sclite ``pra`` style (kaldialign's alignments)."""
    counts = result.counts()
    out = [f"# {counts.summary()}", f"# unit={result.unit}; kaldialign, sclite costs (sub 4, ins 3, del 3)", ""]
    for u in result.utts:
        r, h, e = format_alignment(u.pairs)
        out.append(f"id: ({u.uttid})")
        if u.missing_hyp:
            out.append("Note: hypothesis missing, scored as empty")
        out.append("Scores: (#C #S #D #I) " + " ".join(str(u.count(op)) for op in "CSDI"))
        out.append(f"REF:  {r}".rstrip() if u.pairs else "REF:")
        out.append(f"HYP:  {h}".rstrip() if u.pairs else "HYP:")
        out.append(f"Eval: {e}".rstrip())
        out.append("")
    return "\n".join(out)


def fallback_result_text(counts: ErrorCounts) -> str:
    """``result.txt`` when sclite is absent: keeps sclite's ``Sum/Avg`` and ``Sum`` rows
    so tools that grep it (ESPnet's ``show_asr_result.sh``) still work."""
    n = max(counts.n_ref, 1)
    pct = lambda x: 100.0 * x / n  # noqa: E731
    return (
        "# written by espnet_pathways.reporting.scoring from kaldialign's alignments "
        "(sclite not found); see alignment.txt\n"
        "| SPKR   | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |\n"
        f"| Sum/Avg| {counts.n_utt:4d} {counts.n_ref:6d} | "
        f"{pct(counts.cor):5.1f} {pct(counts.sub):6.1f} {pct(counts.dele):6.1f} "
        f"{pct(counts.ins):6.1f} {pct(counts.err):6.1f} {counts.sentence_error_rate:6.1f} |\n"
        f"| Sum    | {counts.n_utt:4d} {counts.n_ref:6d} | {counts.cor:5d} {counts.sub:6d} "
        f"{counts.dele:6d} {counts.ins:6d} {counts.err:6d} {counts.n_sent_err:6d} |\n"
    )


def find_sctk_tool(name: str, env_var: str, extra: Sequence[str] = ()) -> Optional[str]:
    """Locate an sctk program: ``$<env_var>``, then PATH, then ``extra`` and Debian's sctk
    location (which keeps sclite and sc_stats off PATH)."""
    env = os.environ.get(env_var)
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    cands = list(extra) + [str(Path(c).with_name(name)) for c in SCLITE_CANDIDATES]
    return next((c for c in cands if os.access(c, os.X_OK)), None)


def find_sclite() -> Optional[str]:
    """Locate sclite: ``$SCLITE``, then PATH, then Debian's sctk location."""
    return find_sctk_tool("sclite", "SCLITE")


_SUM_RE = re.compile(r"^\s*\|\s*Sum\s*\|([^|]*)\|([^|]*)\|\s*$")


def parse_sclite_sum(text: str, unit: str, missing: Sequence[str] = ()) -> Optional[ErrorCounts]:
    """The raw-count ``Sum`` row of sclite's ``rsum`` report (``-o all``) as counts.

    ``# Snt # Wrd | Corr Sub Del Ins Err S.Err``; None if the row is absent.
    """
    for line in text.splitlines():
        m = _SUM_RE.match(line)
        if m:
            values = (m.group(1) + " " + m.group(2)).split()
            if len(values) != 8:
                return None
            n_snt, n_wrd, cor, sub, dele, ins, _err, n_sent_err = (int(float(v)) for v in values)
            return ErrorCounts(unit, n_snt, n_wrd, cor, sub, dele, ins, n_sent_err,
                               scorer="sclite", missing=tuple(missing))
    return None


def run_sclite(sclite: str, work_dir: Path, report: str) -> str:
    """Run sclite on ``work_dir``'s ``ref.trn``/``hyp.trn`` as ``asr.sh`` does (plus
    ``-e utf-8 -s``) and return its ``report`` (``all``, ``pra``, ...) from stdout."""
    cmd = [
        sclite, "-r", "ref.trn", "trn", "-h", "hyp.trn", "trn",
        "-i", "rm", "-e", "utf-8", "-s", "-o", report, "stdout",
    ]
    proc = subprocess.run(cmd, cwd=work_dir, capture_output=True, text=True, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"sclite failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    if proc.stderr.strip():
        logger.warning("sclite stderr: %s", proc.stderr.strip()[:500])
    return proc.stdout


def sclite_reports(sclite: str, ref_trn: str, hyp_trn: str) -> Tuple[str, str]:
    """sclite's ``all`` report (asr.sh's result.txt) and its ``pra`` alignments, computed
    in a scratch directory so that nothing in the score directory changes until both exist."""
    with tempfile.TemporaryDirectory(prefix="sclite.") as tmp:
        work = Path(tmp)
        (work / "ref.trn").write_text(ref_trn, encoding="utf-8")
        (work / "hyp.trn").write_text(hyp_trn, encoding="utf-8")
        return run_sclite(sclite, work, "all"), run_sclite(sclite, work, "pra")


def write_score_dir(
    result: ScoreResult,
    out_dir: PathLike,
    use_sclite: bool = True,
    sclite: Optional[str] = None,
) -> ErrorCounts:
    """Write ``ref.trn``, ``hyp.trn``, ``result.txt``, ``alignment.txt``, ``score.json``.

    With sclite (found by :func:`find_sclite`, or given), ``result.txt``, ``alignment.txt``
    and the counts of ``score.json`` are sclite's; otherwise kaldialign's (with
    :func:`fallback_result_text`).  Returns the counts written to ``score.json``.
    """
    out = Path(out_dir)
    ref_trn, hyp_trn = trn_text(result, "ref"), trn_text(result, "hyp")
    exe = (sclite or find_sclite()) if use_sclite else None
    if exe:
        report, pra = sclite_reports(exe, ref_trn, hyp_trn)
        counts = parse_sclite_sum(report, result.unit, result.missing)
        if counts is None:
            raise RuntimeError(f"{exe}: no 'Sum' row in sclite's report for {out}")
        ours = result.counts()
        if (ours.sub, ours.dele, ours.ins) != (counts.sub, counts.dele, counts.ins):
            logger.info(
                "%s: sclite's counts (the ones kept) differ from kaldialign's by an "
                "equal-cost tie: sub/del/ins %d/%d/%d vs %d/%d/%d", out, counts.sub,
                counts.dele, counts.ins, ours.sub, ours.dele, ours.ins,
            )
    else:
        if use_sclite:
            logger.warning(
                "sclite not found: %s counted by kaldialign (sclite's costs, but equal-cost "
                "alignments split differently: totals can differ slightly from sclite's)", out,
            )
        counts = result.counts()
        report, pra = fallback_result_text(counts), alignment_text(result)
    with exclusive_lock(out, "this score directory"):
        for name, text in (("ref.trn", ref_trn), ("hyp.trn", hyp_trn), ("result.txt", report),
                           ("alignment.txt", pra)):
            atomic_write_text(out / name, text)
        atomic_write_text(out / "score.json", json.dumps(counts.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return counts
