"""WER/CER scoring that reproduces ESPnet's ``asr.sh`` score directories.

Why this exists: ESPnet computes its reported error rates by tokenising the
Kaldi ``text`` files into sclite ``trn`` files and running NIST ``sclite``.
That makes the numbers depend on an external binary that is not always
installed, and the parsing of ``result.txt`` is brittle. This module

* tokenises exactly like ``espnet2.bin.tokenize_text`` (word: whitespace split;
  char: every character, a space becoming ``<space>``),
* aligns with sclite's own edit costs (substitution 4, insertion 3, deletion 3)
  so our sub/del/ins breakdown matches sclite's and not just the total,
* writes the same layout as ``asr.sh`` (``ref.trn``, ``hyp.trn``,
  ``result.txt``) plus machine-readable ``score.json`` and a per-utterance
  ``alignment.txt`` that exist even when sclite does not, and
* when sclite is available, runs it and cross-checks its totals against ours.

Comparison is case-sensitive (sclite is run with ``-s``): sclite's default
case folding only folds ASCII (``Café`` == ``café`` but ``À`` != ``à``), which
would make accented languages inconsistent; casing is normalised in data
preparation, so scoring compares tokens exactly.
"""

from __future__ import annotations

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
from typing import Dict, Iterable, List, Literal, Mapping, Optional, Sequence, Tuple, Union

logger = logging.getLogger(__name__)

Unit = Literal["word", "char"]
UNITS: Tuple[str, ...] = ("word", "char")
#: ESPnet's CharTokenizer space symbol (espnet2/text/char_tokenizer.py).
SPACE_SYMBOL = "<space>"

# sclite's default DP weights (also SRILM's / kaldialign's "sclite_mode").
COST_SUB = 4
COST_INS = 3
COST_DEL = 3

#: Where Debian's ``sctk`` package puts the real binary (``/usr/bin/sctk`` is a
#: dispatching wrapper and there is no ``sclite`` on PATH).
_SCLITE_CANDIDATES = ("/usr/lib/sctk/bin/sclite",)

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------
def read_text(path: PathLike) -> Dict[str, str]:
    """Read a Kaldi ``text`` file (``uttid words...``) preserving file order.

    A line with only an utterance id means an empty transcript (kept, as ``""``),
    because dropping it would silently shrink the test set. Duplicate ids are an
    error: which transcript wins would otherwise depend on the reader.
    """
    out: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            uttid = parts[0]
            if uttid in out:
                raise ValueError(f"{path}:{lineno}: duplicate utterance id {uttid!r}")
            out[uttid] = parts[1].strip() if len(parts) > 1 else ""
    return out


def read_utt2lang(path: PathLike) -> Dict[str, str]:
    """Read a two-column ``uttid lang`` map (same format as ``utt2spk``)."""
    out: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'uttid lang', got {line!r}")
            out[parts[0]] = parts[1]
    return out


def tokenize(text: str, unit: str) -> List[str]:
    """Split a transcript into scoring units the way ESPnet's scoring does.

    ``asr.sh`` pipes ``text`` through ``tokenize_text -f 2-`` which re-joins the
    whitespace-split fields with single spaces, so runs of whitespace collapse
    before the char tokenizer maps each remaining space to ``<space>``.
    """
    if unit == "word":
        return text.split()
    if unit == "char":
        return [SPACE_SYMBOL if c == " " else c for c in " ".join(text.split())]
    raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")


# --------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class AlignedPair:
    """One alignment column: ``op`` is C(orrect), S(ub), D(el) or I(ns)."""

    ref: Optional[str]
    hyp: Optional[str]
    op: str


def align(ref: Sequence[str], hyp: Sequence[str]) -> List[AlignedPair]:
    """Minimum-cost alignment with sclite's weights (sub 4, ins 3, del 3).

    Plain unit-cost Levenshtein gives the same *total* in most cases but can
    split it differently (e.g. two substitutions vs. a deletion + insertion),
    which would make our sub/del/ins disagree with sclite's result.txt.
    Equal-cost alignments can still differ in counts (3 sub = 12 = 4 del/ins),
    so ties are broken like sclite: on the backtrace from the end, diagonal
    (correct/substitution) first, then insertion, then deletion. That order was
    checked against sclite 2.4 on 3000 random utterances with no mismatch; the
    other orders disagree on some.
    """
    n, m = len(ref), len(hyp)
    # cost[i][j]: cheapest alignment of ref[:i] with hyp[:j].
    # (Plain-Python inner loop kept branch-light: CER on a full test set runs
    # this ~10^8 times.)
    cost = [[j * COST_INS for j in range(m + 1)]]
    for i in range(1, n + 1):
        r = ref[i - 1]
        prev = cost[i - 1]
        left = i * COST_DEL
        row = [left]
        for j in range(1, m + 1):
            best = prev[j - 1] if r == hyp[j - 1] else prev[j - 1] + COST_SUB
            up = prev[j] + COST_DEL
            if up < best:
                best = up
            left += COST_INS
            if left < best:
                best = left
            left = best
            row.append(best)
        cost.append(row)

    pairs: List[AlignedPair] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0:
            same = ref[i - 1] == hyp[j - 1]
            if cost[i][j] == cost[i - 1][j - 1] + (0 if same else COST_SUB):
                pairs.append(AlignedPair(ref[i - 1], hyp[j - 1], "C" if same else "S"))
                i, j = i - 1, j - 1
                continue
        if j > 0 and cost[i][j] == cost[i][j - 1] + COST_INS:
            pairs.append(AlignedPair(None, hyp[j - 1], "I"))
            j -= 1
            continue
        pairs.append(AlignedPair(ref[i - 1], None, "D"))
        i -= 1
    pairs.reverse()
    return pairs


@dataclass
class UttScore:
    """Counts and alignment of one utterance."""

    uttid: str
    ref: List[str]
    hyp: List[str]
    pairs: List[AlignedPair]
    missing_hyp: bool = False

    def count(self, op: str) -> int:
        return sum(1 for p in self.pairs if p.op == op)

    @property
    def cor(self) -> int:
        return self.count("C")

    @property
    def sub(self) -> int:
        return self.count("S")

    @property
    def dele(self) -> int:
        return self.count("D")

    @property
    def ins(self) -> int:
        return self.count("I")

    @property
    def err(self) -> int:
        return self.sub + self.dele + self.ins


def format_alignment(pairs: Sequence[AlignedPair]) -> Tuple[str, str, str]:
    """Render REF/HYP/Eval rows like sclite's ``-o pra`` (case-sensitive mode).

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


# --------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------
def _rate(num: int, den: int) -> float:
    """Percentage; 0 errors over 0 tokens is 0 %, errors over 0 tokens is inf."""
    if den == 0:
        return 0.0 if num == 0 else math.inf
    return 100.0 * num / den


@dataclass
class ScoreResult:
    """Corpus-level totals plus the per-utterance details they came from."""

    unit: str
    utts: List[UttScore] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)

    @property
    def n_utt(self) -> int:
        return len(self.utts)

    @property
    def cor(self) -> int:
        return sum(u.cor for u in self.utts)

    @property
    def sub(self) -> int:
        return sum(u.sub for u in self.utts)

    @property
    def dele(self) -> int:
        return sum(u.dele for u in self.utts)

    @property
    def ins(self) -> int:
        return sum(u.ins for u in self.utts)

    @property
    def err(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def n_ref(self) -> int:
        """Number of reference tokens (= cor + sub + del)."""
        return sum(len(u.ref) for u in self.utts)

    @property
    def n_sent_err(self) -> int:
        return sum(1 for u in self.utts if u.err > 0)

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
        }

    def summary(self) -> str:
        """One log line, e.g. ``WER 23.45 % (N=1234, sub/del/ins=10/5/3, ...)``."""
        return (
            f"{self.metric} {self.error_rate:.2f} % (N={self.n_ref}, "
            f"sub/del/ins={self.sub}/{self.dele}/{self.ins}, utts={self.n_utt}, "
            f"SER {self.sentence_error_rate:.2f} %, missing={len(self.missing)})"
        )


def _preview(ids: Iterable[str], k: int = 10) -> str:
    ids = list(ids)
    more = f" ... (+{len(ids) - k} more)" if len(ids) > k else ""
    return ", ".join(ids[:k]) + more


def score(ref: Mapping[str, str], hyp: Mapping[str, str], unit: str = "word") -> ScoreResult:
    """Score hypotheses against references (both ``uttid -> transcript``).

    * A reference without a hypothesis is scored as an empty hypothesis (all
      deletions) so a crashed decoding job cannot make WER look better; it is
      logged and listed in ``ScoreResult.missing``.
    * A hypothesis without a reference is an error: it means the wrong data
      directory was scored, and silently ignoring it would hide that.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    extra = [u for u in hyp if u not in ref]
    if extra:
        raise ValueError(
            f"{len(extra)} hypothesis utterance(s) have no reference: {_preview(extra)}"
        )
    result = ScoreResult(unit=unit)
    for uttid, ref_text in ref.items():
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


# --------------------------------------------------------------------------
# Score directory (asr.sh layout)
# --------------------------------------------------------------------------
def trn_id(uttid: str) -> str:
    """The id written inside ``(...)`` of a trn line.

    ``sclite -i rm`` derives the speaker from the text before the first ``-``
    (else the first ``_``); an id with neither makes sclite print
    ``extract_speaker can't locate RM id`` and file the utterance under the
    previous speaker. Such ids get a ``nospk-`` prefix (ESPnet itself writes
    ``spk-uttid``); all others are written unchanged so they stay greppable.
    """
    if any(c in uttid for c in "() \t"):
        raise ValueError(f"utterance id {uttid!r} cannot be written to a trn file")
    if "-" in uttid or "_" in uttid:
        return uttid
    return f"nospk-{uttid}"


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file + rename so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def trn_lines(result: ScoreResult, side: str) -> List[str]:
    """``tok tok ... (id)`` lines for ``side`` in {"ref", "hyp"}."""
    lines = []
    for u in result.utts:
        toks = u.ref if side == "ref" else u.hyp
        # An empty transcript gives " (id)", which sclite reads as zero tokens.
        lines.append(f"{' '.join(toks)} ({trn_id(u.uttid)})")
    return lines


def alignment_text(result: ScoreResult) -> str:
    """Per-utterance alignment report in sclite ``pra`` style."""
    out = [
        f"# {result.summary()}",
        f"# unit={result.unit} cost: sub={COST_SUB} ins={COST_INS} del={COST_DEL}",
        "",
    ]
    for u in result.utts:
        r, h, e = format_alignment(u.pairs)
        out.append(f"id: ({u.uttid})")
        if u.missing_hyp:
            out.append("Note: hypothesis missing, scored as empty")
        out.append(f"Scores: (#C #S #D #I) {u.cor} {u.sub} {u.dele} {u.ins}")
        out.append(f"REF:  {r}".rstrip() if u.pairs else "REF:")
        out.append(f"HYP:  {h}".rstrip() if u.pairs else "HYP:")
        out.append(f"Eval: {e}".rstrip())
        out.append("")
    return "\n".join(out)


def fallback_result_text(result: ScoreResult) -> str:
    """``result.txt`` when sclite is absent: keeps a ``Sum/Avg`` line so tools
    that grep it (ESPnet's ``show_asr_result.sh``) still work."""
    n = max(result.n_ref, 1)
    pct = lambda x: 100.0 * x / n  # noqa: E731
    return (
        "# written by espnet_pathways.scoring (sclite not found); see alignment.txt\n"
        "| SPKR   | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |\n"
        f"| Sum/Avg| {result.n_utt:4d} {result.n_ref:6d} | "
        f"{pct(result.cor):5.1f} {pct(result.sub):6.1f} {pct(result.dele):6.1f} "
        f"{pct(result.ins):6.1f} {pct(result.err):6.1f} {result.sentence_error_rate:6.1f} |\n"
        f"| Sum    | {result.n_utt:4d} {result.n_ref:6d} | {result.cor:5d} {result.sub:6d} "
        f"{result.dele:6d} {result.ins:6d} {result.err:6d} {result.n_sent_err:6d} |\n"
    )


def find_sclite() -> Optional[str]:
    """Locate sclite: ``$SCLITE``, then PATH, then Debian's sctk location."""
    env = os.environ.get("SCLITE")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("sclite")
    if found:
        return found
    for cand in _SCLITE_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    return None


_SUM_RE = re.compile(r"^\s*\|\s*Sum\s*\|([^|]*)\|([^|]*)\|\s*$")
_SUMAVG_RE = re.compile(r"^\s*\|\s*Sum/Avg\s*\|([^|]*)\|([^|]*)\|\s*$")


@dataclass(frozen=True)
class ScliteSummary:
    """Totals parsed from sclite's ``-o all`` output."""

    n_snt: int
    n_wrd: int
    cor: int
    sub: int
    dele: int
    ins: int
    err: int
    n_sent_err: int
    err_pct: Optional[float]


def parse_sclite_result(text: str) -> Optional[ScliteSummary]:
    """Parse the raw-count ``Sum`` row (exact ints) and the ``Sum/Avg`` Err %.

    Returns None if the count row is absent (e.g. sclite run without ``rsum``).
    """
    counts: Optional[List[float]] = None
    err_pct: Optional[float] = None
    for line in text.splitlines():
        m = _SUM_RE.match(line)
        if m and counts is None:
            counts = [float(x) for x in (m.group(1) + " " + m.group(2)).split()]
        m = _SUMAVG_RE.match(line)
        if m and err_pct is None:
            vals = m.group(2).split()
            if len(vals) == 6:
                err_pct = float(vals[4])
    if counts is None or len(counts) != 8:
        return None
    c = [int(x) for x in counts]
    return ScliteSummary(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], err_pct)


def sclite_disagreements(result: ScoreResult, s: ScliteSummary) -> List[str]:
    """Human-readable list of fields where sclite and we differ (empty = agree)."""
    ours = {
        "n_utt": result.n_utt, "n_ref": result.n_ref, "cor": result.cor,
        "sub": result.sub, "del": result.dele, "ins": result.ins, "err": result.err,
        "sentence_errors": result.n_sent_err,
    }
    theirs = {
        "n_utt": s.n_snt, "n_ref": s.n_wrd, "cor": s.cor, "sub": s.sub, "del": s.dele,
        "ins": s.ins, "err": s.err, "sentence_errors": s.n_sent_err,
    }
    diffs = [f"{k}: ours={ours[k]} sclite={theirs[k]}" for k in ours if ours[k] != theirs[k]]
    if s.err_pct is not None and math.isfinite(result.error_rate):
        # sclite prints one decimal, rounding half up (81.25 -> 81.3).
        if abs(result.error_rate - s.err_pct) > 0.05 + 1e-6:
            diffs.append(f"err%: ours={result.error_rate:.2f} sclite={s.err_pct}")
    return diffs


def run_sclite(sclite: str, score_dir: Path) -> str:
    """Run sclite as ``asr.sh`` does (plus ``-e utf-8 -s``), return stdout."""
    cmd = [
        sclite, "-r", "ref.trn", "trn", "-h", "hyp.trn", "trn",
        "-i", "rm", "-e", "utf-8", "-s", "-o", "all", "stdout",
    ]
    proc = subprocess.run(cmd, cwd=score_dir, capture_output=True, text=True, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"sclite failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    if proc.stderr.strip():
        logger.warning("sclite stderr: %s", proc.stderr.strip()[:500])
    return proc.stdout


def write_score_dir(
    result: ScoreResult,
    out_dir: PathLike,
    use_sclite: bool = True,
    sclite: Optional[str] = None,
) -> Optional[ScliteSummary]:
    """Write ``ref.trn``, ``hyp.trn``, ``result.txt``, ``alignment.txt``, ``score.json``.

    ``result.txt`` comes from sclite when it can be found (keeping its detailed
    alignments, like ``asr.sh``), otherwise from :func:`fallback_result_text`.
    ``score.json`` is always *our* counts; a mismatch with sclite is logged as a
    warning and recorded under ``"sclite_agrees"``. Returns sclite's summary, if run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "ref.trn", "\n".join(trn_lines(result, "ref")) + "\n")
    atomic_write(out / "hyp.trn", "\n".join(trn_lines(result, "hyp")) + "\n")
    atomic_write(out / "alignment.txt", alignment_text(result))

    payload = result.to_dict()
    summary: Optional[ScliteSummary] = None
    exe = (sclite or find_sclite()) if use_sclite else None
    if exe:
        text = run_sclite(exe, out)
        atomic_write(out / "result.txt", text)
        summary = parse_sclite_result(text)
        if summary is None:
            logger.warning("could not parse sclite Sum row in %s", out / "result.txt")
            payload["sclite_agrees"] = None
        else:
            diffs = sclite_disagreements(result, summary)
            if diffs:
                logger.warning("sclite disagrees with our counts in %s: %s", out, "; ".join(diffs))
            payload["sclite_agrees"] = not diffs
    else:
        if use_sclite:
            logger.info("sclite not found; writing our own result.txt")
        atomic_write(out / "result.txt", fallback_result_text(result))
        payload["sclite_agrees"] = None
    atomic_write(out / "score.json", json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return summary
