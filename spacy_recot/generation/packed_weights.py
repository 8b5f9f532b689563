"""Linear layers' half-precision weights laid out once for oneDNN, on a CPU.

Without it, every bfloat16 (or float16) matrix product on a CPU first copies its weight
into oneDNN's blocked layout (its verbose log shows a reorder per call), so a
decoding step reads each weight twice and writes it once. Packing does that
reorder once at load, as torch.compile's freezing pass does (the same private
ops), and each layer then calls the same kernel on the packed weight: outputs
are bit for bit the same (tested), a decoding step of the 0.5B model is about
1.15x (16 rows) to 1.3x (one row) faster (docs/speed.md).

The packed tensor replaces the layer's weight, so memory does not grow; the
layer's `state_dict` entry is the plain weight again (a state-dict hook), so
`save_pretrained` and the weight fingerprint see the weights they would see
unpacked.
"""

import logging
from collections import Counter
from types import MethodType
from typing import Any

logger = logging.getLogger(__name__)

# The row count oneDNN is told to expect: decoding steps of a batch of 16.
ROWS_HINT = 16


def _packed_forward(self: Any, x: Any) -> Any:
    import torch

    return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


def _dense_state(module: Any, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    key = prefix + "weight"
    if key in state_dict:
        state_dict[key] = module.weight.to_dense()


def _packed(weight: Any) -> Any:
    import torch

    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), ROWS_HINT)


def onednn_packs(dtype: Any) -> bool:
    """Whether oneDNN packs `dtype` weights on this CPU (float16 needs AVX-512
    FP16 or AVX-NE-CONVERT; bfloat16 packs on any AVX-512 CPU)."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return False
    try:
        _packed(torch.zeros(8, 8, dtype=dtype))
    except (AttributeError, RuntimeError):
        return False
    return True


def packs(dtype: Any) -> bool:
    """Whether `pack_linear_weights` packs a CPU model's `dtype` weights here."""
    import torch

    return dtype in (torch.bfloat16, torch.float16) and onednn_packs(dtype)


def pack_linear_weights(model: Any) -> int:
    """Pack the bfloat16 or float16 weights of `model`'s linear layers on a CPU for
    oneDNN, except the output layer (the greedy loops read its rows) and
    weights shared with another parameter. Does nothing when there are none,
    when oneDNN lacks the ops, or when a packed layer's output differs from
    the plain one on a probe. Returns the number of layers packed."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return 0
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    params = model.named_parameters(remove_duplicate=False)
    owners: Counter = Counter(p.data_ptr() for _, p in params if p.layout == torch.strided)
    layers = [
        m
        for m in model.modules()
        if type(m) is torch.nn.Linear
        and m is not output
        and m.weight is not None  # (a 4-bit layer: int4_weights.py)
        and m.weight.dtype in (torch.bfloat16, torch.float16)
        and m.weight.device.type == "cpu"
        and m.weight.layout == torch.strided
        and owners[m.weight.data_ptr()] == 1
    ]
    if not layers:
        return 0
    # (no_grad, not inference_mode: the new parameters must stay usable outside it.)
    with torch.no_grad():
        probe = layers[0]
        x = torch.randn(3, probe.in_features, dtype=probe.weight.dtype)
        try:
            probe_weight = _packed(probe.weight)
            packed = torch.ops.mkldnn._linear_pointwise(x, probe_weight, probe.bias, "none", [], "")
        except (AttributeError, RuntimeError) as err:  # (a torch or oneDNN without them)
            logger.info("oneDNN could not run a packed linear layer (%s): weights left as they are", err)
            return 0
        if not torch.equal(packed, torch.nn.functional.linear(x, probe.weight, probe.bias)):
            logger.info("oneDNN's packed linear layer differs from the plain one: weights left as they are")
            return 0
        for layer in layers:
            weight = probe_weight if layer is probe else _packed(layer.weight)
            layer.weight = torch.nn.Parameter(weight, requires_grad=False)
            layer.forward = MethodType(_packed_forward, layer)
            layer.register_state_dict_post_hook(_dense_state)
    return len(layers)
