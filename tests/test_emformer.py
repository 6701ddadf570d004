"""EmformerEncoder: ESPnet transducer encoder interface, training, streaming equivalence.

Streaming guarantees tested here:

* ``chunk_forward`` over chunks shaped like ``OnlineAudioProcessor``'s (each chunk after
  the first repeats the previous chunk's last ``2 * subsampling_factor + 3`` frames), with
  ``is_final=True`` on the last one, gives the same encoder output as ``forward`` on the
  same features (atol 1e-5; only float rounding differs).
* Through ESPnet's real ``OnlineAudioProcessor`` + ``BeamSearchTransducer`` (the
  ``Speech2Text.streaming_decode`` loop), streaming decoding gives the same encoder output
  and the same greedy hypothesis as full-utterance decoding *of the features the processor
  produced*.  It cannot equal full-utterance decoding of the whole utterance's features,
  for any encoder: ESPnet's processor skips one feature frame at every chunk boundary and
  zero-pads the final chunk's audio to a full decoding window.  What is asserted against
  the true full-utterance output is what is unaffected by that: the encoder frames that
  only see the first chunk's features are equal.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from espnet2.asr_transducer.encoder.encoder import Encoder
from espnet2.asr_transducer.utils import TooShortUttError

from espnet_pathways.encoders import ENCODER_CHOICES, EmformerEncoder, build_encoder

TOKENS = ["<blank>", "<unk>"] + list("abcdefghijklmnopqrstuvwxyz") + ["<space>", "<sos/eos>"]
FRONTEND_CONF = dict(n_fft=512, win_length=400, hop_length=160, n_mels=40)


def tiny_encoder(seed: int = 0, input_size: int = 40, **conf) -> EmformerEncoder:
    torch.manual_seed(seed)
    kw = dict(output_size=32, num_heads=4, ffn_dim=64, num_layers=2, segment_length=4,
              right_context_length=1, left_context_length=8, dropout_rate=0.0)
    kw.update(conf)
    return build_encoder("emformer", input_size, kw).eval()


def processor_like_chunks(x: torch.Tensor, sizes, overlap: int):
    """Split (1, T, F) like OnlineAudioProcessor: chunk k>0 = last ``overlap`` frames of
    chunk k-1 + its new frames.  Yields (chunk, is_final)."""
    pos, prev, i = 0, None, 0
    T = x.size(1)
    while pos < T:
        n = sizes[i % len(sizes)]
        i += 1
        new = x[:, pos:min(pos + n, T)]
        pos += new.size(1)
        chunk = new if prev is None else torch.cat([prev[:, -overlap:], new], dim=1)
        prev = chunk
        yield chunk, pos >= T


def stream(enc: EmformerEncoder, x: torch.Tensor, sizes=(30, 17, 64, 5, 40)) -> torch.Tensor:
    enc.reset_cache(32, x.device)
    outs = []
    processed = torch.tensor([[0]])
    for chunk, final in processor_like_chunks(x, sizes, enc.stream_overlap_frames):
        out = enc.chunk_forward(chunk, torch.tensor([chunk.size(1)]), processed, is_final=final)
        processed += out.size(1)
        outs.append(out)
    return torch.cat(outs, dim=1)


# ------------------------------------------------------------------ interface
def test_builder_and_espnet_interface():
    enc = tiny_encoder()
    assert isinstance(enc, Encoder)  # passes ESPnetASRTransducerModel's typeguard check
    assert enc.output_size == 32 and isinstance(enc.output_size, int)
    assert enc.embed.subsampling_factor == 6
    assert enc.dynamic_chunk_training is False
    assert enc.stream_overlap_frames == 2 * 6 + 3
    assert ENCODER_CHOICES[0] == "conformer"
    conformer = build_encoder("conformer", 40, {
        "input_conf": {"subsampling_factor": 4, "conv_size": 8},
        "body_conf": [{"block_type": "conformer", "hidden_size": 16, "linear_size": 32,
                       "heads": 2, "conv_mod_kernel_size": 3}],
    })
    assert type(conformer) is Encoder
    with pytest.raises(ValueError, match="conformer, emformer"):
        build_encoder("lstm", 40, {})
    with pytest.raises(ValueError, match="divisible"):
        build_encoder("emformer", 40, {"output_size": 30, "num_heads": 4})


def test_forward_shapes_lengths_and_padding_invariance():
    enc = tiny_encoder()
    x = torch.randn(3, 200, 40)
    x_len = torch.tensor([200, 150, 97])
    out, out_len = enc(x, x_len)
    assert out.shape == (3, 200 // 6, 32)
    assert out_len.tolist() == [33, 25, 16]
    for b in range(3):  # batching/padding does not change an utterance's output
        single, _ = enc(x[b:b + 1, :x_len[b]], x_len[b:b + 1])
        torch.testing.assert_close(single[0], out[b, :out_len[b]], atol=1e-5, rtol=1e-5)


def test_too_short_utterance_raises_espnet_error():
    enc = tiny_encoder()
    with pytest.raises(TooShortUttError):
        enc(torch.randn(1, 5, 40), torch.tensor([5]))
    out, out_len = enc(torch.randn(1, 6, 40), torch.tensor([6]))
    assert out.shape == (1, 1, 32) and out_len.tolist() == [1]


def test_gradient_flows_to_every_parameter():
    enc = tiny_encoder(dropout_rate=0.1).train()
    x = torch.randn(2, 130, 40, requires_grad=True)
    out, out_len = enc(x, torch.tensor([130, 90]))
    mask = torch.arange(out.size(1)).unsqueeze(0) < out_len.unsqueeze(1)
    (out[mask] ** 2).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# -------------------------------------------------------------- in the model
def tiny_transducer(seed: int = 0, normalize: bool = True, **enc_conf):
    from espnet2.asr.frontend.default import DefaultFrontend
    from espnet2.asr_transducer.decoder.rnn_decoder import RNNDecoder
    from espnet2.asr_transducer.joint_network import JointNetwork
    from espnet2.layers.utterance_mvn import UtteranceMVN

    from espnet_pathways.model import PathwayTransducerModel

    torch.manual_seed(seed)
    frontend = DefaultFrontend(**FRONTEND_CONF)
    encoder = tiny_encoder(seed, frontend.output_size(), **enc_conf)
    decoder = RNNDecoder(len(TOKENS), embed_size=16, hidden_size=16)
    joint = JointNetwork(len(TOKENS), encoder.output_size, decoder.output_size, joint_space_size=32)
    return PathwayTransducerModel(
        vocab_size=len(TOKENS), token_list=TOKENS, frontend=frontend, specaug=None,
        normalize=UtteranceMVN() if normalize else None, encoder=encoder, decoder=decoder,
        joint_network=joint, languages=["en", "fr"], auxiliary_ctc_weight=0.3,
    )


def test_pathway_transducer_forward_backward_with_emformer():
    model = tiny_transducer().train()
    g = torch.Generator().manual_seed(0)
    speech = torch.randn(2, 12000, generator=g) * 0.1
    text = torch.tensor([[3, 4, 5, 6], [7, 8, -1, -1]])
    loss, stats, _ = model(speech, torch.tensor([12000, 9000]), text, torch.tensor([4, 2]),
                           lang=torch.tensor([[0], [1]]), lang_lengths=torch.ones(2, dtype=torch.long))
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("encoder.")]
    assert grads and all(gr is not None and gr.abs().sum() > 0 for gr in grads)


# ------------------------------------------------------------------ streaming
@pytest.mark.parametrize("conf", [
    {},  # the paper's segment 4 + right context 1
    {"right_context_length": 2, "left_context_length": 0, "max_memory_size": 3, "tanh_on_mem": True},
    {"segment_length": 3, "right_context_length": 0, "subsampling_factor": 4},
])
@pytest.mark.parametrize("length", [200, 150, 97, 13])
def test_chunk_forward_equals_forward(conf, length):
    enc = tiny_encoder(**conf)
    x = torch.randn(1, length, 40)
    full, _ = enc(x, torch.tensor([length]))
    streamed = stream(enc, x)
    assert streamed.shape == full.shape
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-5)


def test_without_final_flag_the_tail_waits_and_final_chunk_flushes_it():
    enc = tiny_encoder()
    x = torch.randn(1, 150, 40)  # 25 stacked frames
    full, _ = enc(x, torch.tensor([150]))
    enc.reset_cache(32, x.device)
    chunks = [c for c, _ in processor_like_chunks(x, (50, 50, 50), enc.stream_overlap_frames)]
    outs = [enc.chunk_forward(c, torch.tensor([c.size(1)]), None) for c in chunks]
    head = torch.cat(outs, dim=1)
    # Only whole segments whose right context has arrived: 6 segments of 4 frames (the
    # 25th frame is the right context of the 6th); the 25th waits for more or the end.
    assert head.size(1) == 24
    torch.testing.assert_close(head, full[:, :24], atol=1e-5, rtol=1e-5)
    # The attribute Speech2Text-side callers set; a chunk of only overlap frames flushes.
    enc.final_chunk = True
    last = chunks[-1][:, -enc.stream_overlap_frames:]
    tail = enc.chunk_forward(last, torch.tensor([last.size(1)]), None)
    torch.testing.assert_close(torch.cat([head, tail], 1), full, atol=1e-5, rtol=1e-5)
    assert enc.final_chunk is False  # reset for the next stream


class Greedy:
    """Frame-synchronous greedy transducer search (argmax; at most 2 symbols per frame),
    resumable across chunks.  ESPnet's ``BeamSearchTransducer`` with a random model emits
    hardly anything (a token only wins if it makes the next blank likelier), so this
    checks hypotheses that are not empty."""

    def __init__(self, model):
        self.decoder, self.joint = model.decoder, model.joint_network
        self.yseq = [0]
        self.state = self.decoder.init_state(1)
        self.dec_out, self.next_state = self.decoder.score(self.yseq, self.state)

    def __call__(self, enc_out):  # (T, D)
        for t in range(enc_out.size(0)):
            for _ in range(2):
                k = int(self.joint(enc_out[t:t + 1], self.dec_out).argmax(-1))
                if k == 0:
                    break
                self.yseq.append(k)
                self.state = self.next_state
                self.dec_out, self.next_state = self.decoder.score(self.yseq, self.state)
        return self.yseq


@pytest.mark.parametrize("decoding_window", [640, 250])
def test_speech2text_streaming_loop_matches_full_decoding(decoding_window):
    """ESPnet's streaming path: OnlineAudioProcessor -> chunk_forward -> BeamSearchTransducer,
    as Speech2Text.streaming_decode runs it, plus greedy search on the same chunks (see the
    module docstring for what is and is not equal)."""
    from espnet2.asr_transducer.beam_search_transducer import BeamSearchTransducer
    from espnet2.asr_transducer.frontend.online_audio_processor import OnlineAudioProcessor

    # No utterance_mvn: it normalises each streaming chunk separately (ESPnet behaviour).
    model = tiny_transducer(seed=1, normalize=False).eval()
    enc = model.encoder
    proc = OnlineAudioProcessor(model._extract_feats, None, decoding_window,
                                enc.embed.subsampling_factor, FRONTEND_CONF, torch.device("cpu"))
    beam = BeamSearchTransducer(model.decoder, model.joint_network, beam_size=2)
    speech = torch.randn(38000, generator=torch.Generator().manual_seed(0)) * 0.1

    enc.reset_cache(32, torch.device("cpu"))
    beam.reset_cache()
    step = proc.decoding_samples
    n_steps = len(speech) // step
    enc_outs, new_feats, prev_len = [], [], None
    with torch.no_grad():
        greedy = Greedy(model)
        for i in range(n_steps + 1):
            final = i == n_steps
            chunk = speech[i * step:] if final else speech[i * step:(i + 1) * step]
            feats, feats_len = proc.compute_features(chunk, final)
            overlap = 0 if prev_len is None else min(enc.stream_overlap_frames, prev_len)
            prev_len = feats.size(1)
            new_feats.append(feats[:, overlap:])
            enc.final_chunk = final  # what PathwaySpeech2Text.streaming_decode sets
            out = enc.chunk_forward(feats, feats_len, None, left_context=32)
            enc_outs.append(out)
            hyps = beam(out[0], is_final=final)
            greedy_stream = greedy(out[0])
        streamed = torch.cat(enc_outs, dim=1)
        stream_feats = torch.cat(new_feats, dim=1)

        # 1. Full-utterance decoding of the features the processor produced: equal.
        ref, _ = enc(stream_feats, torch.tensor([stream_feats.size(1)]))
        assert streamed.shape == ref.shape
        torch.testing.assert_close(streamed, ref, atol=1e-5, rtol=1e-5)
        ref_hyps = beam(ref[0])
        assert [h.yseq for h in hyps] == [h.yseq for h in ref_hyps]
        assert hyps[0].score == pytest.approx(ref_hyps[0].score, abs=1e-3)
        greedy_full = Greedy(model)(ref[0])
        assert len(greedy_full) > 10  # the check is not vacuous
        assert greedy_stream == greedy_full

        # 2. True full-utterance features: the processor drops one frame per chunk boundary,
        # so only the encoder frames that see nothing past the first chunk's frames agree.
        full_feats, _ = model._extract_feats(speech[None], torch.tensor([len(speech)]))
        first = new_feats[0].size(1)
        torch.testing.assert_close(stream_feats[:, :first], full_feats[:, :first], atol=1e-4, rtol=1e-4)
        skipped = (stream_feats[0, first] - full_feats[0, first]).abs().max()
        assert skipped > 1e-2  # ESPnet's processor skipped full-utterance frame `first`
        full_out, _ = enc(full_feats, torch.tensor([full_feats.size(1)]))
        seg, rc, s = enc.segment_length, enc.right_context_length, enc.subsampling_factor
        n_exact = (first // s - rc) // seg * seg  # whole segments + look-ahead in frames < first
        assert n_exact > 0 or decoding_window < 640
        torch.testing.assert_close(streamed[:, :n_exact], full_out[:, :n_exact], atol=1e-5, rtol=1e-5)


# ------------------------------------------------- through ASRPathwaysTask (after patch)
def _task_has_encoder_option() -> bool:
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    return any("--encoder" in a.option_strings for a in ASRPathwaysTask.get_parser()._actions)


needs_task_patch = pytest.mark.skipif(
    not _task_has_encoder_option(), reason="ASRPathwaysTask has no --encoder option yet"
)


def emformer_task_args():
    import yaml
    from pathlib import Path

    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    cfg_file = Path(__file__).resolve().parents[1] / "conf" / "tuning" / "train_emformer_tiny.yaml"
    parser = ASRPathwaysTask.get_parser()
    args = parser.parse_args(["--token_list", "none", "--output_dir", "unused"])
    for k, v in yaml.safe_load(cfg_file.read_text()).items():
        setattr(args, k, v)
    args.token_list, args.token_type, args.languages = list(TOKENS), "char", ["en", "fr"]
    args.specaug = None
    args.frontend_conf = dict(FRONTEND_CONF)
    args.encoder_conf = dict(args.encoder_conf, output_size=32, ffn_dim=64, num_layers=2)
    args.decoder_conf = dict(args.decoder_conf, embed_size=16, hidden_size=16)
    return args


@needs_task_patch
def test_task_builds_emformer_model_from_config():
    from espnet_pathways.model import PathwayTransducerModel
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    model = ASRPathwaysTask.build_model(emformer_task_args())
    assert isinstance(model, PathwayTransducerModel)
    assert isinstance(model.encoder, EmformerEncoder)
    assert model.encoder.segment_length == 4 and model.encoder.right_context_length == 1
    assert model.encoder.embed.subsampling_factor == 6


@needs_task_patch
def test_pathway_speech2text_streams_emformer_through_espnet_processor(tmp_path):
    import yaml

    from espnet_pathways.inference import PathwaySpeech2Text
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    args = emformer_task_args()
    args.normalize = None
    torch.manual_seed(0)
    model = ASRPathwaysTask.build_model(args)
    torch.save(model.state_dict(), tmp_path / "model.pth")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    s2t = PathwaySpeech2Text(asr_train_config=str(tmp_path / "config.yaml"),
                             asr_model_file=str(tmp_path / "model.pth"), beam_size=1,
                             streaming=True, decoding_window=240, exact_streaming=False)
    assert isinstance(s2t.asr_model.encoder, EmformerEncoder)
    assert s2t.exact_stream is None  # ESPnet's OnlineAudioProcessor path, on request
    enc = s2t.asr_model.encoder
    outs, feats, prev_len = [], [], []
    chunk_forward = enc.chunk_forward

    def recording(x, x_len, *a, **kw):
        overlap = min(enc.stream_overlap_frames, prev_len[-1]) if prev_len else 0
        prev_len.append(x.size(1))
        feats.append(x[:, overlap:])
        out = chunk_forward(x, x_len, *a, **kw)
        outs.append(out)
        return out

    enc.chunk_forward = recording
    speech = torch.randn(20000, generator=torch.Generator().manual_seed(1)) * 0.1
    hyps = s2t.decode_streaming_utterance(speech, lang="fr")
    assert hyps and isinstance(s2t.text(hyps), str)
    stream_feats = torch.cat(feats, dim=1)
    with torch.no_grad():
        ref, _ = enc(stream_feats, torch.tensor([stream_feats.size(1)]))
    # Every frame, the tail included, came out of the stream: the final chunk flushed it.
    torch.testing.assert_close(torch.cat(outs, 1), ref, atol=1e-5, rtol=1e-5)
    assert s2t(speech.numpy(), lang="fr")  # offline decoding too


# ------------------------------------------------- the MLS recipe's paper-scale model
RECIPE_CONF = Path(__file__).resolve().parents[1] / "egs2" / "mls_pathways" / "asr1" / "conf"
MERGED_VOCAB = 1548  # the paper's merged word-piece vocabulary


def build_recipe_model(name: str):
    """The MLS recipe's model of ``conf/<name>.yaml`` with the paper's vocabulary, on the
    meta device (shapes only: no memory, no initialisation)."""
    import yaml

    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    cfg = yaml.safe_load((RECIPE_CONF / f"{name}.yaml").read_text())
    args = ASRPathwaysTask.get_parser().parse_args(["--token_list", "none", "--output_dir", "x"])
    for k, v in cfg.items():
        setattr(args, k, v)
    args.token_list = ["<blank>"] + [f"p{i}" for i in range(MERGED_VOCAB - 2)] + ["<sos/eos>"]
    args.token_type, args.languages = "word", ["en", "fr", "it", "nl"]
    with torch.device("meta"):
        return ASRPathwaysTask.build_model(args), cfg


def test_mls_paper_scale_config_is_the_papers_emformer():
    """conf/train_dense.yaml: 30-layer Emformer, d 512, FFN 2048, stride 6, 4 + 1 frames
    (300 ms), about 100M parameters (the counts docs/emformer.md gives); dense-small about
    one 70%-sparse pathway; the pruning and pathway configs train the same model."""
    from espnet_pathways.masks import prunable_parameter_names

    model, cfg = build_recipe_model("train_dense")
    enc = model.encoder
    assert isinstance(enc, EmformerEncoder)
    layers = enc.emformer.emformer_layers
    assert len(layers) == 30 and enc.output_size == 512
    assert all(layer.pos_ff[1].out_features == 2048 for layer in layers)
    assert enc.subsampling_factor == 6
    assert (enc.segment_length, enc.right_context_length) == (4, 1)
    frame_ms = 1000 * cfg["frontend_conf"]["hop_length"] / 16000 * enc.subsampling_factor
    assert (enc.segment_length + enc.right_context_length) * frame_ms == 300
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    prunable = sum(params[n].numel() for n in prunable_parameter_names(model))
    encoder = sum(p.numel() for p in enc.parameters())
    assert (round(total / 1e6, 1), round(prunable / 1e6, 1), round(encoder / 1e6, 1)) == \
        (105.4, 102.8, 94.8)

    small, _ = build_recipe_model("train_dense_small")
    small_total = sum(p.numel() for p in small.parameters())
    assert round(small_total / 1e6, 1) == 31.1
    assert abs(small_total / total - 0.3) < 0.01  # one pathway at 70% sparsity
    assert small.encoder.segment_length == 4 and small.encoder.subsampling_factor == 6

    keys = ("frontend_conf", "encoder", "encoder_conf", "decoder", "decoder_conf",
            "joint_network_conf")
    import yaml
    for name in ("train_pathways", "prune_lsp", "prune_lap"):
        derived = yaml.safe_load((RECIPE_CONF / f"{name}.yaml").read_text())
        assert {k: derived.get(k) for k in keys} == {k: cfg.get(k) for k in keys}, name
