"""PathwaySpeech2Text: streaming decode of a tiny model, language selection, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from helpers import LANGS, tiny_args, tiny_model
from test_model import random_pathways

from espnet_pathways.languages import UnknownLanguageError
from espnet_pathways.masks import PathwayMasks


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    args = tiny_args()
    model = tiny_model()
    torch.save(model.state_dict(), d / "model.pth")
    masks = random_pathways(model, sparsity=0.7)
    masks.save(d / "masks.pth")
    cfg = {k: v for k, v in vars(args).items()}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    return d, masks


def speech2text(exp, **kw):
    from espnet_pathways.inference import PathwaySpeech2Text

    d, _ = exp
    return PathwaySpeech2Text(asr_train_config=str(d / "config.yaml"),
                              asr_model_file=str(d / "model.pth"), beam_size=2,
                              decoding_window=320, **kw)


def test_streaming_decode_chunk_by_chunk(exp):
    s2t = speech2text(exp, streaming=True)
    speech = np.random.default_rng(0).standard_normal(16000).astype("float32") * 0.1
    hyps = s2t.decode_streaming_utterance(speech, lang="fr")
    assert hyps and isinstance(s2t.text(hyps), str)
    assert s2t._in_stream is False  # the final chunk closed the stream
    # Chunk calls: partial hypotheses, then a final one.
    step = s2t.audio_processor.decoding_samples
    s2t.streaming_decode(speech[:step], is_final=False, lang="fr")
    with pytest.raises(RuntimeError, match="middle of a stream"):
        s2t.streaming_decode(speech[step:2 * step], is_final=False, lang="it")
    s2t.streaming_decode(speech[step:], is_final=True, lang="fr")


def test_language_selection_changes_the_weights_in_use(exp):
    _, masks = exp
    s2t = speech2text(exp, streaming=False, pathway_masks=str(exp[0] / "masks.pth"))
    params = dict(s2t.asr_model.named_parameters())
    for lang in ("en", "nl"):
        s2t.set_language(lang)
        for n, m in masks.for_language(lang).items():
            assert torch.all(params[n][~m] == 0)
            assert torch.equal(params[n][m], s2t._dense[n][m])
    with pytest.raises(UnknownLanguageError, match="'de'.*en fr it nl"):
        s2t(np.zeros(8000, dtype="float32"), lang="de")


def test_pathway_model_needs_a_language(exp):
    s2t = speech2text(exp, streaming=False, pathway_masks=str(exp[0] / "masks.pth"))
    with pytest.raises(ValueError, match="give lang="):
        s2t(np.zeros(8000, dtype="float32"))


def test_dense_model_knows_its_languages(exp):
    s2t = speech2text(exp, streaming=False)
    assert s2t.known_languages == LANGS
    with pytest.raises(UnknownLanguageError):
        s2t.set_language("xx")


def test_masks_for_other_languages_are_refused_like_in_training(exp, tmp_path):
    """The rule of PathwayTransducerModel.set_pathway_masks, applied at inference."""
    _, masks = exp
    other = PathwayMasks(dict(zip(["de", "en", "fr", "it"], (masks.masks[lang] for lang in LANGS))),
                         {"method": "random"})
    other.save(tmp_path / "de.pth")
    with pytest.raises(UnknownLanguageError, match=r"de\.pth.*language\(s\) de.*en fr it nl"):
        speech2text(exp, streaming=False, pathway_masks=str(tmp_path / "de.pth"))


def test_truncated_checkpoint_names_the_file(exp, tmp_path):
    from espnet_pathways.checkpoint import CheckpointError

    d, _ = exp
    data = (d / "model.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    from espnet_pathways.inference import PathwaySpeech2Text

    with pytest.raises(CheckpointError, match=r"cut\.pth: cannot load the model"):
        PathwaySpeech2Text(asr_train_config=str(d / "config.yaml"),
                           asr_model_file=str(tmp_path / "cut.pth"))
    with pytest.raises(FileNotFoundError, match=r"nope\.pth: model file not found"):
        PathwaySpeech2Text(asr_train_config=str(d / "config.yaml"),
                           asr_model_file=str(tmp_path / "nope.pth"))


def test_abort_stream_lets_the_next_utterance_start(exp):
    s2t = speech2text(exp, streaming=True)
    speech = np.random.default_rng(1).standard_normal(16000).astype("float32") * 0.1
    step = s2t.audio_processor.decoding_samples
    s2t.streaming_decode(speech[:step], is_final=False, lang="fr")
    s2t.abort_stream()  # e.g. the rest of that utterance could not be read
    hyps = s2t.decode_streaming_utterance(speech, lang="it")
    assert s2t.lang == "it" and isinstance(s2t.text(hyps), str)



def tiny_lm(d, token_list, seed=0, dropout=0.0):
    """A small character RNN LM (ESPnet's LMTask, seq_rnn) written as lm_train writes one."""
    from espnet2.tasks.lm import LMTask

    d.mkdir(parents=True, exist_ok=True)
    args = LMTask.get_parser().parse_args(
        ["--token_list", "none", "--output_dir", str(d), "--lm", "seq_rnn",
         "--lm_conf", f"{{unit: 16, nlayers: 1, dropout_rate: {dropout}}}",
         "--token_type", "char"])
    args.token_list = list(token_list)
    torch.manual_seed(seed)
    lm = LMTask.build_model(args)
    torch.save(lm.state_dict(), d / "lm.pth")
    (d / "lm_config.yaml").write_text(yaml.safe_dump(vars(args)))
    return d / "lm_config.yaml", d / "lm.pth"


def test_lm_is_fused_into_the_beam_search(exp, tmp_path):
    from helpers import TOKENS

    lm_config, lm_file = tiny_lm(tmp_path, TOKENS)
    s2t = speech2text(exp, streaming=True, lm_train_config=str(lm_config),
                      lm_file=str(lm_file), lm_weight=0.3)
    assert s2t.beam_search.use_lm and s2t.beam_search.lm_weight == 0.3
    speech = np.random.default_rng(0).standard_normal(16000).astype("float32") * 0.1
    assert s2t.decode_streaming_utterance(speech, lang="fr")
    assert not speech2text(exp, streaming=True).beam_search.use_lm


def test_lm_on_another_token_list_is_refused(exp, tmp_path):
    """The fused scores are indexed by token id: an LM trained on other tokens would
    score the wrong characters without any error."""
    from helpers import TOKENS

    lm_config, lm_file = tiny_lm(tmp_path, TOKENS[:-2] + ["ü", "<sos/eos>"])
    with pytest.raises(ValueError, match=f"{lm_config}.*token list"):
        speech2text(exp, lm_train_config=str(lm_config), lm_file=str(lm_file), lm_weight=0.3)


def test_token_bonus_is_added_to_every_fused_token(exp, tmp_path):
    """lm_token_bonus b with lm_weight w: the search adds w * log p_LM + b per token."""
    from helpers import TOKENS

    lm_config, lm_file = tiny_lm(tmp_path, TOKENS)
    kw = dict(streaming=True, lm_train_config=str(lm_config), lm_file=str(lm_file),
              lm_weight=0.5)
    plain = speech2text(exp, **kw).beam_search
    bonus = speech2text(exp, lm_token_bonus=0.8, **kw).beam_search
    y = torch.tensor([len(TOKENS) - 1, 3])
    lp, _ = plain.lm.score(y, None, None)
    lb, _ = bonus.lm.score(y, None, None)
    assert isinstance(lb, list) and isinstance(lb[0], float)  # float scores in the search
    torch.testing.assert_close(bonus.lm_weight * torch.tensor(lb),
                               plain.lm_weight * torch.tensor(lp) + 0.8)
    ys = torch.tensor([[len(TOKENS) - 1, 3], [len(TOKENS) - 1, 5]])
    bp, _ = plain.lm.batch_score(ys, [None, None], None)
    bb, _ = bonus.lm.batch_score(ys, [None, None], None)
    torch.testing.assert_close(bb, bp + 0.8 / 0.5)


def fused_speech2text(exp, lm_dir, **kw):
    return speech2text(exp, streaming=True, lm_train_config=str(lm_dir / "lm_config.yaml"),
                       lm_file=str(lm_dir / "lm.pth"), lm_weight=0.5, lm_token_bonus=0.3, **kw)


def test_fused_lm_is_in_eval_mode(exp, tmp_path):
    """ESPnet's Speech2Text leaves the LM in training mode: with dropout, every LM score
    (and so every decoding) would be random."""
    from helpers import TOKENS

    tiny_lm(tmp_path / "lm", TOKENS, dropout=0.5)
    s2t = fused_speech2text(exp, tmp_path / "lm")
    assert not s2t.beam_search.lm.training and not s2t.beam_search.lm.lm.training
    y = torch.tensor([len(TOKENS) - 1, 3, 4])
    s2t.beam_search.lm.clear_cache()
    first, _ = s2t.beam_search.lm.score(y, None, None)
    s2t.beam_search.lm.clear_cache()
    assert s2t.beam_search.lm.score(y, None, None)[0] == first


def test_lm_scores_are_cached_by_prefix_and_decode_the_same(exp, tmp_path, monkeypatch):
    """The default search asks the LM about the best hypothesis at every expansion, the
    same prefix frame after frame: the cache answers those, with the LM's own answer."""
    from helpers import TOKENS

    from espnet_pathways.lm_fusion import TokenBonusLM

    tiny_lm(tmp_path / "lm", TOKENS)
    audio = np.random.default_rng(3).standard_normal(24000).astype("float32") * 0.1
    calls = []
    s2t = fused_speech2text(exp, tmp_path / "lm")
    inner = s2t.beam_search.lm.lm
    original = inner.score
    monkeypatch.setattr(inner, "score", lambda *a: calls.append(1) or original(*a))
    cached = s2t.decode_streaming_utterance(audio, lang="fr")
    n_cached = len(calls)

    def uncached(self, y, state, x):
        logp, new_state = self.lm.score(y, state, x)
        return (logp + self.offset).tolist(), new_state

    monkeypatch.setattr(TokenBonusLM, "score", uncached)
    calls.clear()
    plain = s2t.decode_streaming_utterance(audio, lang="fr")
    assert [(h.yseq, h.score) for h in cached] == [(h.yseq, h.score) for h in plain]
    assert 0 < n_cached < len(calls), (n_cached, len(calls))


@pytest.fixture()
def lms_per_language(tmp_path):
    """One tiny LM per language (different weights), under lm_<lang>/."""
    from helpers import LANGS, TOKENS

    for i, lang in enumerate(LANGS):
        tiny_lm(tmp_path / f"lm_{lang}", TOKENS, seed=i + 1)
    return tmp_path


@pytest.mark.parametrize("search", ["default", "maes"])  # maes: conf/decode.yaml's
def test_each_language_is_decoded_with_its_own_lm(exp, lms_per_language, search):
    """{lang} in the LM's paths: each utterance is decoded with its language's LM,
    exactly as if that LM alone had been given, in either of ESPnet's searches."""
    d = lms_per_language
    audio = np.random.default_rng(5).standard_normal(24000).astype("float32") * 0.1
    kw = dict(beam_search_config={"search_type": search})
    s2t = fused_speech2text(exp, d / "lm_{lang}", **kw)
    assert s2t.beam_search.search_algorithm.__name__ == (
        "modified_adaptive_expansion_search" if search == "maes" else "default_beam_search")
    for lang in ("it", "en", "it"):
        alone = fused_speech2text(exp, d / f"lm_{lang}", **kw)
        got = s2t.decode_streaming_utterance(audio, lang=lang)
        want = alone.decode_streaming_utterance(audio, lang=lang)
        assert [(h.yseq, h.score) for h in got] == [(h.yseq, h.score) for h in want], lang
        assert s2t.beam_search.use_lm and s2t.beam_search.lm_weight == 0.5
        assert not s2t.beam_search.lm.training
    assert s2t.beam_search.lm is not fused_speech2text(exp, d / "lm_{lang}", lang="en").beam_search.lm


def test_per_language_lms_name_a_missing_language_and_need_the_language(exp, lms_per_language):
    d = lms_per_language
    dense = fused_speech2text(exp, d / "lm_{lang}")
    assert dense.masks is None  # a dense model: the language is needed for the LM alone
    with pytest.raises(ValueError, match="needs the language"):
        dense.decode_streaming_utterance(np.zeros(8000, dtype="float32"))
    (d / "lm_nl/lm.pth").unlink()
    with pytest.raises(FileNotFoundError, match="lm_nl/lm.pth.*language 'nl'"):
        fused_speech2text(exp, d / "lm_{lang}")
    with pytest.raises(ValueError, match="both"):
        speech2text(exp, lm_train_config=str(d / "lm_{lang}/lm_config.yaml"),
                    lm_file=str(d / "lm_en/lm.pth"), lm_weight=0.5)
