"""Linear layers' half-precision weights packed for oneDNN: same outputs, plain weights saved."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from spacy_recot.backends import HFCausalBackend
from spacy_recot.generation.packed_weights import onednn_packs, pack_linear_weights

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def _load(path, dtype=torch.bfloat16):
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()


def _linear_layers(model):
    return [m for m in model.modules() if type(m) is torch.nn.Linear]


# float16 weights pack only on CPUs with float16 conversions (AVX-512 FP16, AVX-NE-CONVERT).
HALF_DTYPES = [
    pytest.param(dtype, marks=pytest.mark.skipif(not onednn_packs(dtype), reason=f"oneDNN packs no {dtype} here"))
    for dtype in (torch.bfloat16, torch.float16)
]


@needs_onednn
@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_packed_model_gives_the_same_outputs_and_state(tiny_qwen3_dir, tmp_path, dtype):
    plain, packed = _load(tiny_qwen3_dir, dtype), _load(tiny_qwen3_dir, dtype)
    n = pack_linear_weights(packed)
    # Every linear layer but the output layer.
    assert n == len(_linear_layers(packed)) - 1 > 0
    assert packed.model.layers[0].mlp.up_proj.weight.layout == torch._mkldnn
    assert packed.lm_head.weight.layout == torch.strided
    ids = torch.randint(0, plain.config.vocab_size, (3, 11))
    with torch.inference_mode():
        assert torch.equal(packed(input_ids=ids).logits, plain(input_ids=ids).logits)
        kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 0}
        assert torch.equal(packed.generate(ids, **kwargs), plain.generate(ids, **kwargs))
    # The state dict holds the plain weights, so saving writes a model that loads unpacked.
    state, expected = packed.state_dict(), plain.state_dict()
    assert list(state) == list(expected)
    assert all(v.layout == torch.strided and torch.equal(v, expected[k]) for k, v in state.items())
    packed.save_pretrained(tmp_path)
    reloaded = _load(tmp_path, dtype)
    assert all(torch.equal(v, expected[k]) for k, v in reloaded.state_dict().items())


def test_only_half_precision_unshared_weights_are_packed(tiny_qwen3_dir):
    assert pack_linear_weights(_load(tiny_qwen3_dir, torch.float32)) == 0
    shared = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)).to(torch.bfloat16)
    shared[1].weight = shared[0].weight
    assert pack_linear_weights(shared) == 0
    assert all(m.weight.layout == torch.strided for m in shared)


def test_packed_layer_with_bias_matches_plain():
    """Packed where oneDNN packs bfloat16 (AVX-512 CPUs), left plain elsewhere
    (AVX2 only): the same outputs either way."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(24, 40).to(torch.bfloat16)
    plain = torch.nn.Linear(24, 40).to(torch.bfloat16)
    plain.load_state_dict(layer.state_dict())
    assert pack_linear_weights(layer) == int(onednn_packs(torch.bfloat16))
    x = torch.randn(2, 5, 24, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(layer(x), plain(x))


def test_backend_packs_on_load_and_saves_plain_weights(tiny_qwen3_dir, tmp_path):
    backend = HFCausalBackend(str(tiny_qwen3_dir), dtype="bfloat16", generation={"max_new_tokens": 8})
    backend.load()
    layout = torch._mkldnn if onednn_packs(torch.bfloat16) else torch.strided
    assert backend.model.model.layers[0].self_attn.q_proj.weight.layout == layout
    # The same weights, so the same fingerprint as the model unpacked.
    unpacked = HFCausalBackend(str(tiny_qwen3_dir), dtype="bfloat16", generation={"max_new_tokens": 8})
    unpacked.load()
    unpacked.use_model(_load(tiny_qwen3_dir), unpacked.tokenizer)
    assert backend.fingerprint() == unpacked.fingerprint()
    backend.to_disk(tmp_path / "saved")
    again = HFCausalBackend(str(tmp_path / "saved"), dtype="bfloat16", generation={"max_new_tokens": 8})
    again.from_disk(tmp_path / "saved")
    assert again.fingerprint() == backend.fingerprint()


@pytest.mark.parametrize("packed", [False, True])
def test_state_tensors_are_the_state_dict_one_at_a_time(tiny_qwen3_dir, tiny_t5_dir, packed):
    from transformers import AutoModelForSeq2SeqLM

    from spacy_recot.backends.loading import state_tensors

    models = [_load(tiny_qwen3_dir), AutoModelForSeq2SeqLM.from_pretrained(tiny_t5_dir)]
    for model in models:
        if packed and torch.backends.mkldnn.is_available():
            pack_linear_weights(model)
        expected = model.state_dict()
        got = list(state_tensors(model))
        assert [name for name, _ in got] == list(expected)
        assert all(t.layout == torch.strided and torch.equal(t, expected[n]) for n, t in got)
