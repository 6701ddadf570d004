"""The pathway transducer: loss, language ids, masked forward/gradients, batching."""
from __future__ import annotations

import pytest
import torch

from helpers import LANGS, subset, tiny_batch, tiny_model

from espnet_pathways.masks import PathwayMasks, prunable_parameter_names
from espnet_pathways.pruning import random_masks


def random_pathways(model, sparsity=0.5, languages=LANGS) -> PathwayMasks:
    names = prunable_parameter_names(model)
    shapes = {n: p.shape for n, p in model.named_parameters() if n in names}
    return PathwayMasks(
        {lang: random_masks(shapes, sparsity, "per_tensor", seed=i)
         for i, lang in enumerate(languages)},
        {"method": "random", "target_sparsity": sparsity},
    )


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_dense_forward_backward_uses_torchaudio_loss():
    model = tiny_model()
    loss, stats, weight = model(**tiny_batch([0, 1, 2, 3]))
    assert torch.isfinite(loss).all() and int(weight) == 4
    assert stats["loss_transducer"] is not None
    loss.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.step_languages == set(LANGS)


def test_torchaudio_loss_matches_reference_recursion():
    """The RNN-T loss equals the forward-variable recursion computed by hand."""
    model = tiny_model()
    torch.manual_seed(0)
    B, T, U, V = 1, 4, 2, 5
    logits = torch.randn(B, T, U + 1, V)
    target = torch.tensor([[1, 3]], dtype=torch.int32)
    loss = model._calc_transducer_loss(None, logits, target, torch.tensor([T]), torch.tensor([U]))
    lp = logits.log_softmax(-1)[0]
    alpha = torch.full((T, U + 1), float("-inf"))
    alpha[0, 0] = 0.0
    for t in range(T):
        for u in range(U + 1):
            if t == 0 and u == 0:
                continue
            a = alpha[t - 1, u] + lp[t - 1, u, 0] if t > 0 else torch.tensor(float("-inf"))
            b = alpha[t, u - 1] + lp[t, u - 1, target[0, u - 1]] if u > 0 else torch.tensor(float("-inf"))
            alpha[t, u] = torch.logaddexp(a, b)
    expected = -(alpha[T - 1, U] + lp[T - 1, U, 0])
    assert torch.allclose(loss, expected, atol=1e-4)


def test_unknown_language_id_is_a_clear_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="language id 7 is out of range"):
        model(**tiny_batch([0, 7]))


def test_fastemit_is_rejected():
    with pytest.raises(ValueError, match="FastEmit"):
        tiny_model(model_conf={"fastemit_lambda": 0.1, "auxiliary_ctc_weight": 0.0})


def test_masked_weights_are_zero_in_every_forward():
    model = tiny_model()
    masks = random_pathways(model)
    model.set_pathway_masks(masks)
    seen = {}
    modules = dict(model.named_modules())

    def hook(name):
        def fn(module, inputs):
            seen.setdefault(name, []).append(module.weight.detach().clone())
        return fn

    handles = [modules[n.rsplit(".", 1)[0]].register_forward_pre_hook(hook(n.rsplit(".", 1)[0]))
               for n in masks.param_names if n.endswith(".weight")]
    model(**tiny_batch([2, 2]))
    for h in handles:
        h.remove()
    assert seen, "no masked module ran"
    for n in masks.param_names:
        mod = n.rsplit(".", 1)[0]
        if mod in seen:
            for w in seen[mod]:
                assert torch.all(w[~masks.for_language("it")[n]] == 0), n


def test_gradient_outside_the_language_mask_is_exactly_zero():
    model = tiny_model()
    masks = random_pathways(model)
    model.set_pathway_masks(masks)
    loss, _, _ = model(**tiny_batch([1, 1, 1]))
    loss.sum().backward()
    params = dict(model.named_parameters())
    for n, m in masks.for_language("fr").items():
        g = params[n].grad
        assert g is not None
        assert torch.all(g[~m] == 0), n
        assert g[m].abs().sum() > 0, n


def test_mixed_batch_gradient_equals_sum_of_homogeneous_batches():
    batch = tiny_batch([0, 1, 0, 1, 3], seed=3)
    model = tiny_model()
    model.set_pathway_masks(random_pathways(model))
    loss, _, _ = model(**batch)
    loss.sum().backward()
    mixed = grads(model)

    model.zero_grad()
    total = 0.0
    for idx in ([0, 2], [1, 3], [4]):
        sub_loss, _, _ = model(**subset(batch, idx))
        (sub_loss.sum() * len(idx) / 5).backward()
        total += float(sub_loss.detach()) * len(idx) / 5
    homogeneous = grads(model)
    assert abs(float(loss) - total) < 1e-4
    for n, g in mixed.items():
        assert torch.allclose(g, homogeneous[n], atol=1e-5), n


def test_shared_mask_runs_one_pass_and_unknown_mask_language_fails():
    model = tiny_model()
    masks = random_pathways(model, languages=["en"])
    model.set_pathway_masks(masks)
    with pytest.raises(KeyError, match="no pathway for language 'fr'"):
        model(**tiny_batch([0, 1]))
    with pytest.raises(ValueError, match="not in --languages"):
        model.set_pathway_masks(random_pathways(model, languages=["de"]))
    shared = masks.for_language("en")
    masks.masks = {lang: shared for lang in LANGS}
    model.set_pathway_masks(masks)
    calls = []
    h = model.encoder.register_forward_pre_hook(lambda m, i: calls.append(1))
    model(**tiny_batch([0, 1, 2, 3]))
    h.remove()
    assert len(calls) == 1


def test_masks_follow_the_weights_and_state_dict_keys_stay_espnets():
    model = tiny_model()
    keys = set(model.state_dict())
    model.set_pathway_masks(random_pathways(model))
    assert set(model.state_dict()) == keys  # packing, averaging, --init_param unchanged
    masks = model.pathway_masks
    model.to(torch.float64)
    assert model.pathway_masks is masks  # same device: nothing copied
    model.half()
    mask = next(iter(model.pathway_masks.for_language("en").values()))
    assert mask.dtype == torch.bool
    model.to("meta")  # a device move (meta: no allocation) moves every mask along
    for lang in model.pathway_masks.languages:
        for m in model.pathway_masks.for_language(lang).values():
            assert m.device.type == "meta" and m.dtype == torch.bool
