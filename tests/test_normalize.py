"""CausalMVN: global MVN plus a running per-utterance mean, equal offline and streamed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import tiny_model

from espnet_pathways.normalize import CausalMVN
from espnet_pathways.streaming import ExactStreamingInput, supports_exact_streaming


@pytest.fixture
def stats_file(tmp_path):
    """Global statistics of 8 feature bins (mean around 3, variance 1-4)."""
    rng = np.random.default_rng(0)
    n, mean, var = 500.0, rng.standard_normal(8) + 3, rng.uniform(1, 4, 8)
    path = tmp_path / "feats_stats.npz"
    np.savez(path, count=n, sum=n * mean, sum_square=n * (mean ** 2 + var))
    return str(path)


def test_frame_t_subtracts_the_mean_of_frames_up_to_t_with_the_prior(stats_file):
    norm = CausalMVN(stats_file, prior_frames=5)
    x = torch.randn(1, 30, 8) + 3
    y, _ = norm(x.clone(), torch.tensor([30]))  # ESPnet's GlobalMVN works in place
    g, _ = norm.per_frame(x.clone(), torch.tensor([30]))
    for t in (0, 1, 7, 29):
        expected = g[0, t] - g[0, :t + 1].sum(0) / (t + 1 + 5)
        torch.testing.assert_close(y[0, t], expected)
    # Without a prior the first frame is its own mean; a constant offset is removed.
    y0, _ = CausalMVN(stats_file, prior_frames=0)(x.clone(), None)
    assert torch.allclose(y0[0, 0], torch.zeros(8), atol=1e-6)
    shifted, _ = CausalMVN(stats_file, prior_frames=0, norm_vars=False)(x + 2.0, None)
    unshifted, _ = CausalMVN(stats_file, prior_frames=0, norm_vars=False)(x.clone(), None)
    torch.testing.assert_close(shifted, unshifted, atol=1e-5, rtol=1e-5)


def test_padding_never_reaches_a_real_frame(stats_file):
    norm = CausalMVN(stats_file)
    a, b = torch.randn(1, 40, 8), torch.randn(1, 25, 8)
    batch = torch.cat([a, torch.cat([b, torch.full((1, 15, 8), 1e3)], 1)])
    y, lens = norm(batch.clone(), torch.tensor([40, 25]))
    torch.testing.assert_close(y[0], norm(a, torch.tensor([40]))[0][0])
    torch.testing.assert_close(y[1, :25], norm(b, torch.tensor([25]))[0][0])
    assert lens.tolist() == [40, 25] and (y[1, 25:] == 0).all()


def test_stream_in_pieces_equals_offline(stats_file):
    norm = CausalMVN(stats_file, prior_frames=20)
    x = torch.randn(1, 53, 8)
    offline, _ = norm(x.clone(), torch.tensor([53]))
    g, _ = norm.per_frame(x.clone(), torch.tensor([53]))
    state, pieces = None, []
    for lo, hi in ((0, 0), (0, 7), (7, 8), (8, 40), (40, 40), (40, 53)):
        y, state = norm.stream(g[:, lo:hi], state)
        pieces.append(y)
    torch.testing.assert_close(torch.cat(pieces, 1), offline)
    assert state[1] == 53


def test_recipe_option_builds_it_and_streams_exactly(stats_file, tmp_path):
    """``--normalize causal_mvn`` (ASRPathwaysTask's choice) builds CausalMVN, and the
    exact streaming input gives the offline features, in any chunking, utterance after
    utterance (the running mean restarts with ``reset``)."""
    rng = np.random.default_rng(6)
    n, dim = 1000.0, tiny_model().frontend.output_size()
    mean, var = rng.standard_normal(dim) - 5, rng.uniform(1, 4, dim)
    np.savez(tmp_path / "stats.npz", count=n, sum=n * mean, sum_square=n * (mean ** 2 + var))
    model = tiny_model(normalize="causal_mvn",
                       normalize_conf={"stats_file": str(tmp_path / "stats.npz"),
                                       "prior_frames": 30}).eval()
    assert isinstance(model.normalize, CausalMVN) and model.normalize.prior_frames == 30
    assert supports_exact_streaming(model)
    stream = ExactStreamingInput(model)
    for seed in (1, 2):
        speech = torch.tensor(np.random.default_rng(seed).standard_normal(20000)
                              .astype("float32")) * 0.1
        feats, lens = model._extract_feats(speech[None], torch.tensor([speech.numel()]))
        offline, _ = model.normalize(feats, lens)
        for step in (257, 3200, 20000):
            stream.reset()
            out = []
            n_full = speech.numel() // step
            for i in range(n_full + 1):
                final = i == n_full
                chunk = speech[i * step:] if final else speech[i * step:(i + 1) * step]
                f = stream.features(chunk, final)
                out += [f] if f.numel() else []
            streamed = torch.cat(out, 1)
            assert streamed.shape == offline.shape, step
            torch.testing.assert_close(streamed, offline, atol=1e-4, rtol=1e-4)


def test_negative_prior_is_refused(stats_file):
    with pytest.raises(ValueError, match="prior_frames"):
        CausalMVN(stats_file, prior_frames=-1)


def test_state_dict_keys_are_global_mvn_s(tmp_path):
    """A causal_mvn model stores what a global_mvn model stores (the statistics as
    ``normalize.mean``/``normalize.std``): checkpoints load across the two."""
    rng = np.random.default_rng(7)
    dim = tiny_model().frontend.output_size()
    np.savez(tmp_path / "stats.npz", count=10.0, sum=rng.standard_normal(dim),
             sum_square=np.full(dim, 20.0))
    conf = {"stats_file": str(tmp_path / "stats.npz")}
    causal = tiny_model(normalize="causal_mvn", normalize_conf=conf)
    plain = tiny_model(normalize="global_mvn", normalize_conf=conf)
    assert causal.state_dict().keys() == plain.state_dict().keys()
    assert "normalize.mean" in causal.state_dict()
    causal.load_state_dict(plain.state_dict())


def test_export_of_a_causal_model_builds_and_says_how_to_decode(tmp_path, caplog):
    """export_pathway's plain-ESPnet parameter check builds a causal_mvn model (same
    parameters as global_mvn), and the export says it needs PathwaySpeech2Text."""
    import logging

    import yaml

    from helpers import LANGS, tiny_args

    from espnet_pathways.bin.export_pathway import export_pathway
    from espnet_pathways.inference import PathwaySpeech2Text
    from espnet_pathways.masks import PathwayMasks, prunable_parameter_names
    from espnet_pathways.pruning import random_masks

    dim = tiny_model().frontend.output_size()
    np.savez(tmp_path / "stats.npz", count=10.0, sum=np.zeros(dim), sum_square=np.full(dim, 20.0))
    conf = {"stats_file": str(tmp_path / "stats.npz"), "prior_frames": 50}
    model = tiny_model(normalize="causal_mvn", normalize_conf=conf)
    params = dict(model.named_parameters())
    shapes = {n: params[n].shape for n in prunable_parameter_names(model)}
    PathwayMasks({lang: random_masks(shapes, 0.5, seed=i) for i, lang in enumerate(LANGS)}
                 ).save(tmp_path / "masks.pth")
    torch.save(model.state_dict(), tmp_path / "model.pth")
    args = tiny_args(normalize="causal_mvn", normalize_conf=conf)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(dict(vars(args))))
    with caplog.at_level(logging.WARNING):
        export_pathway(str(tmp_path / "config.yaml"), str(tmp_path / "model.pth"), LANGS[0],
                       str(tmp_path / "export"), pathway_masks=str(tmp_path / "masks.pth"))
    assert "decode the export with PathwaySpeech2Text" in caplog.text
    s2t = PathwaySpeech2Text(asr_train_config=str(tmp_path / "export/config.yaml"),
                             asr_model_file=str(tmp_path / "export/model.pth"), beam_size=2)
    assert isinstance(s2t.asr_model.normalize, CausalMVN)
    assert s2t.asr_model.normalize.prior_frames == 50
