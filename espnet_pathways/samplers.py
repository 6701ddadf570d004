"""Language-homogeneous batches: every mini-batch holds utterances of one language.

Pathway training can run on mixed batches (the model splits them by language) or on
language-homogeneous batches, as in the paper's Algorithm 1.  This sampler follows
ESPnet's :class:`~espnet2.samplers.category_power_sampler.CategoryPowerSampler`
conventions (``category2utt`` file, shape file, ``batch_bins``, P(l) ∝ (n_l/N)^β) but
packs each batch from a single language:

1. P(l) ∝ (n_l / N)^β over the languages' total sizes n_l (β = 1: proportional to the
   data; β < 1 flattens towards uniform, up-sampling low-resource languages).
2. The number of batches of language l is P(l) times the number of batches the data
   would fill, so an epoch has about as many batches as with ESPnet's numel sampler.
3. Each language's utterances are sorted by length and packed into batches of at most
   ``batch_bins``, as ESPnet's numel sampler packs the whole corpus, so a batch holds
   utterances of similar length.  (CategoryPowerSampler packs them in random order: on
   the embedded corpus such batches are padded to 1.9x their audio, and a pathway step
   cost twice a dense one; ``benchmarks/bench_batch_padding.py``.)  The language's
   batches are drawn in random order, cycled when it is up-sampled.  Every epoch is a
   new draw (:meth:`LanguageHomogeneousSampler.generate`, which ESPnet's iterator calls
   with ``epoch + seed``), so a down-sampled language sees different batches in each
   epoch, and ESPnet shuffles the batch order, as with numel.
"""
from __future__ import annotations

import math
import random
from typing import Dict, Iterator, List, Sequence, Tuple

from espnet2.fileio.read_text import load_num_sequence_text, read_2columns_text
from espnet2.samplers.abs_sampler import AbsSampler


class LanguageHomogeneousSampler(AbsSampler):
    """Batches of one language each, languages drawn with P(l) ∝ (n_l/N)^β.

    Args:
        batch_bins: maximum sum of utterance sizes (first shape file) per batch.
        shape_files: ESPnet shape files (the first one, e.g. speech_shape, is used).
        category2utt_file: ``lang utt1 utt2 ...`` per line.
        power: β of P(l) ∝ (n_l/N)^β.
        seed: random seed of the draw that iterating the sampler gives.
        min_batch_size: smallest batch kept (e.g. the number of DDP workers).
    """

    def __init__(
        self,
        batch_bins: int,
        shape_files: Sequence[str],
        category2utt_file: str,
        power: float = 1.0,
        seed: int = 0,
        min_batch_size: int = 1,
    ) -> None:
        if batch_bins <= 0:
            raise ValueError(f"batch_bins must be positive, got {batch_bins}")
        self.batch_bins = batch_bins
        self.power = power
        self.category2utt_file = category2utt_file
        sizes = {k: v[0] for k, v in
                 load_num_sequence_text(shape_files[0], loader_type="csv_int").items()}
        self.category2utt: Dict[str, List[str]] = {
            lang: utts.split() for lang, utts in read_2columns_text(category2utt_file).items()
        }
        missing = [u for utts in self.category2utt.values() for u in utts if u not in sizes]
        if missing:
            raise KeyError(
                f"{len(missing)} utterances of {category2utt_file} are not in "
                f"{shape_files[0]}, e.g. {missing[:3]}"
            )
        bins = {lang: sum(sizes[u] for u in utts) for lang, utts in self.category2utt.items()}
        total = sum(bins.values())
        weights = {lang: (b / total) ** power for lang, b in bins.items()}
        norm = sum(weights.values())
        self.language_probs = {lang: w / norm for lang, w in weights.items()}
        n_batches = max(1, math.ceil(total / batch_bins))
        self.packed: Dict[str, List[Tuple[str, ...]]] = {
            lang: self._pack_by_length(lang, utts, sizes, min_batch_size)
            for lang, utts in self.category2utt.items()
        }
        self.wanted = {lang: max(1, round(self.language_probs[lang] * n_batches))
                       for lang in self.category2utt}
        self.seed = seed

    def generate(self, seed: int) -> List[Tuple[str, ...]]:
        """One epoch's batches, drawn with ``seed``.

        ESPnet's iterator asks for ``generate(epoch + seed)`` every epoch, so a language
        drawn below its batch count (beta < 1 down-samples the large ones) contributes a
        different subset each epoch and, over the epochs, all of its data; an up-sampled
        one cycles through all of its batches before repeating any.
        """
        rng = random.Random(seed)
        batch_list: List[Tuple[str, ...]] = []
        for lang in sorted(self.packed):
            batches, want = self.packed[lang], self.wanted[lang]
            drawn: List[Tuple[str, ...]] = []
            while len(drawn) < want:  # each cycle draws every batch once, in random order
                cycle = list(batches)
                rng.shuffle(cycle)
                drawn.extend(cycle[:want - len(drawn)])
            batch_list.extend(drawn)
        rng.shuffle(batch_list)
        return batch_list

    def _pack_by_length(self, lang: str, utts: Sequence[str], sizes: Dict[str, int],
                        min_batch_size: int) -> List[Tuple[str, ...]]:
        """``utts`` sorted by length, cut into batches of at most ``batch_bins`` (an
        utterance longer than that alone, as numel does), longest first in each batch; a
        last batch smaller than ``min_batch_size`` joins the one before it."""
        if len(utts) < min_batch_size:
            raise ValueError(f"cannot fill batches of {min_batch_size} utterances for {lang}: "
                             f"it has {len(utts)}")
        batches: List[List[str]] = []
        cur: List[str] = []
        cur_bins = 0
        for u in sorted(utts, key=lambda x: (sizes[x], x)):
            if cur and cur_bins + sizes[u] > self.batch_bins and len(cur) >= min_batch_size:
                batches.append(cur)
                cur, cur_bins = [], 0
            cur.append(u)
            cur_bins += sizes[u]
        if len(cur) >= min_batch_size or not batches:
            batches.append(cur)
        else:
            batches[-1].extend(cur)
        return [tuple(sorted(b, key=lambda x: -sizes[x])) for b in batches]

    def __len__(self) -> int:
        return sum(self.wanted.values())  # every draw holds this many batches

    def __iter__(self) -> Iterator[Tuple[str, ...]]:
        return iter(self.generate(self.seed))

    def __repr__(self) -> str:
        probs = ", ".join(f"{k}={v:.3f}" for k, v in sorted(self.language_probs.items()))
        return (f"{self.__class__.__name__}(N-batch={len(self)}, batch_bins={self.batch_bins}, "
                f"power={self.power}, P(lang): {probs})")


class RankShareSampler(AbsSampler):
    """One DDP rank's share of every batch of ``sampler`` (``batch[rank::world]``, as
    ESPnet shards its own batches), for every epoch's draw: all ranks draw the same
    batches from the same seed, and each keeps its slice."""

    def __init__(self, sampler: LanguageHomogeneousSampler, rank: int, world: int) -> None:
        self.sampler, self.rank, self.world = sampler, rank, world

    def generate(self, seed: int) -> List[Tuple[str, ...]]:
        return [b[self.rank::self.world] for b in self.sampler.generate(seed)]

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Tuple[str, ...]]:
        return iter(self.generate(self.sampler.seed))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(rank={self.rank}/{self.world}, {self.sampler!r})"
