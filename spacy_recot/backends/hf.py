"""Hugging Face models in process: the `generate` settings a config may give,
and what the seq2seq and causal backends share (loading through `loading.py`,
token counts, saving, the weight fingerprint, a LoRA adapter merged at load)."""

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import ModelLoadError
from ..generation.gqa_attention import use_gqa_attention
from ..generation.int4_weights import quantize_linear_weights
from ..generation.packed_weights import pack_linear_weights, packs
from .base import Backend
from .devices import check_dtype, resolve_device, resolve_dtype
from .loading import (
    TRUST_REMOTE_CODE_ENV,
    load_model,
    load_pretrained,
    save_dequantized,
    state_tensors,
    trusts_remote_code,
)

# What every Hugging Face backend needs installed (pip requirement strings):
# `spacy package` lists them for a pipeline, and a missing one is named.
# The `weights` settings: as loaded, or 4-bit linear layers (int4_weights.py).
WEIGHTS = ("auto", "int4")
HF_REQUIREMENTS = ("torch>=2.1", "transformers>=5.0,<6", "accelerate>=1.0", "sentencepiece>=0.2", "safetensors>=0.4")


# What a config's `generation` block may hand to `generate`: how tokens are chosen,
# penalised and stopped, each a plain setting of transformers' GenerationConfig
# (and `synced_gpus`, which training under DeepSpeed ZeRO-3 sets). A pipeline's
# config is untrusted, so anything else is refused by name: settings that load
# code (below), and those that change what `generate` returns or how it runs
# (return_dict_in_generate, num_return_sequences, cache_implementation, ...).
GENERATION_SETTINGS = frozenset(
    {
        "do_sample",
        "num_beams",
        "temperature",
        "top_k",
        "top_p",
        "top_h",
        "min_p",
        "typical_p",
        "epsilon_cutoff",
        "eta_cutoff",
        "repetition_penalty",
        "encoder_repetition_penalty",
        "length_penalty",
        "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size",
        "bad_words_ids",
        "sequence_bias",
        "suppress_tokens",
        "begin_suppress_tokens",
        "forced_bos_token_id",
        "forced_eos_token_id",
        "exponential_decay_length_penalty",
        "renormalize_logits",
        "remove_invalid_values",
        "min_length",
        "min_new_tokens",
        "max_length",
        "max_new_tokens",
        "max_time",
        "early_stopping",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "decoder_start_token_id",
        "use_cache",
        "low_memory",
        "synced_gpus",
    }
)
# Settings that make transformers import and run Python code from a folder or the
# Hugging Face Hub, and why.
CODE_LOADING_SETTINGS = {
    "custom_generate": "it imports and runs a generate.py from a folder or the Hugging Face Hub",
    "trust_remote_code": (
        f"it lets transformers run code from a folder or the Hub; a config cannot allow that "
        f"(for a model whose code you have read, name it in ${TRUST_REMOTE_CODE_ENV} when running)"
    ),
    # Strategies transformers 5 moved to Hub repositories of code (contrastive
    # search, DoLa, group and constrained beam search).
    **dict.fromkeys(
        ("penalty_alpha", "dola_layers", "num_beam_groups", "diversity_penalty", "constraints", "force_words_ids"),
        "it selects a decoding strategy whose code transformers fetches from the Hugging Face Hub and runs",
    ),
}


def check_generation(generation: Dict[str, Any]) -> Dict[str, Any]:
    """The `generation` block, checked against what the backends support: a
    setting that loads code, or any other one not in GENERATION_SETTINGS, is
    refused with its config key (spaCy refuses unsafe config values at load
    the same way), before any weights are loaded."""
    for key, value in generation.items():
        where = f"model.generation.{key}"
        if key in CODE_LOADING_SETTINGS:
            raise ValueError(f"{where}: refused, as {CODE_LOADING_SETTINGS[key]}")
        if key not in GENERATION_SETTINGS:
            raise ValueError(
                f"{where} is not a generation setting the backends support; use one of {sorted(GENERATION_SETTINGS)}"
            )
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a plain value (number, string, list or table), not {value!r}") from None
    return generation


def merge_generation(
    defaults: Dict[str, Any], generation: Optional[Dict[str, Any]], max_new_tokens: Optional[int]
) -> Dict[str, Any]:
    """A backend's `generate` settings: the user's `generation` over the defaults,
    with `max_new_tokens` set at the top level (so output budgeting sees it)."""
    generation = dict(generation or {})
    if "max_new_tokens" in generation:
        raise ValueError(
            "model.generation.max_new_tokens: set model.max_new_tokens instead (the component "
            "splits long docs so that their answers fit it)"
        )
    merged = {**defaults, **generation}
    if max_new_tokens is not None:
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"model.max_new_tokens must be a positive integer, not {max_new_tokens!r}")
        merged["max_new_tokens"] = max_new_tokens
    return merged


@dataclass(frozen=True)
class HFSettings:
    """The settings of a Hugging Face backend, defined once; each registered
    function's signature gives its version's defaults.

    name_or_path (str): A folder written by `save_pretrained`, or a hub id.
    revision (Optional[str]): The hub revision.
    device (str): "auto" (spaCy's GPU after `spacy.require_gpu`, else a GPU when
        torch sees one, else the CPU), "cpu", "cuda", "cuda:1", ...
    dtype (str): "auto" (the fastest precision that keeps answers on this
        machine: `devices.resolve_dtype`) or a torch dtype name.
    max_input_tokens (int): Longer docs are split into chunks that fit.
    generation (Dict[str, Any]): `generate` settings, max_new_tokens included
        (checked: `check_generation`).
    adapter (Optional[str]): A LoRA adapter merged into the weights at load
        (a folder, or the name of one shipped with spacy-recot).
    weights (str): "auto" (the weights in `dtype`) or "int4": the linear
        layers' weights in 4 bits, with bfloat16 activations in their products
        (CPU only; `generation/int4_weights.py`).
    """

    # The settings the answers depend on (the response cache's key).
    IDENTITY: ClassVar[Tuple[str, ...]] = (
        "name_or_path",
        "revision",
        "device",
        "dtype",
        "generation",
        "adapter",
        "weights",
    )

    name_or_path: str
    revision: Optional[str] = None
    device: str = "auto"
    dtype: str = "auto"
    max_input_tokens: int = 640
    generation: Dict[str, Any] = field(default_factory=dict)
    adapter: Optional[str] = None
    weights: str = "auto"

    def __post_init__(self) -> None:
        check_dtype(self.dtype)
        if self.weights not in WEIGHTS:
            raise ValueError(f"model.weights must be one of {', '.join(WEIGHTS)}, not {self.weights!r}")
        if (
            isinstance(self.max_input_tokens, bool)
            or not isinstance(self.max_input_tokens, int)
            or self.max_input_tokens < 1
        ):
            raise ValueError(f"model.max_input_tokens must be a positive integer, not {self.max_input_tokens!r}")
        check_generation(self.generation)
        if self.adapter is not None:
            object.__setattr__(self, "adapter", str(self.adapter))


class HFBackend(Backend):
    """What the Hugging Face backends share: loading, token counts, saving."""

    auto_model: str = ""  # the transformers Auto class that loads the weights
    # The half precision the model survives: dtype "auto" on a GPU without
    # bfloat16 or on a CPU with float16 arithmetic (see resolve_dtype).
    half_dtype: str = "float16"
    _transient = ("model", "tokenizer")

    settings_class = HFSettings

    def __init__(self, *args: Any, **kwargs: Any):
        self.settings = settings = self._settings(args, kwargs)
        # The limits the component splits docs by (a test or a server may narrow them).
        self.max_input_tokens: Optional[int] = settings.max_input_tokens
        self.max_new_tokens: Optional[int] = settings.generation.get("max_new_tokens")
        self.model: Any = None
        self.tokenizer: Any = None
        # Where the weights were last loaded from: a worker process reloads them there.
        self._source: Optional[Tuple[str, Dict[str, Any]]] = None
        # Running totals for benchmarks: generate calls, prompt and generated tokens.
        self.stats: Counter = Counter()

    @property
    def is_loaded(self) -> bool:
        return self.model is not None

    def requirements(self) -> List[str]:
        return list(HF_REQUIREMENTS)

    def use_model(self, model: Any, tokenizer: Any) -> None:
        """Generate with a model already in memory (training's dev scorer uses
        the model being trained); `release()` lets go of it again."""
        with self.lock:
            self.model, self.tokenizer = model, tokenizer
            self.__dict__["_fingerprint"] = None

    def release(self) -> None:
        """Drop the model and tokenizer (they are loaded again on next use)."""
        with self.lock:
            self.model = self.tokenizer = None
            self.__dict__["_fingerprint"] = None

    def fingerprint(self) -> Optional[str]:
        """A digest of the model's config, tokenizer and every weight tensor's
        name, shape, dtype and bytes (computed once per load, about a second
        for 0.5B parameters): a retrained or re-quantized model gets another,
        and the same weights get the same one in every process."""
        self.ensure_loaded()
        digest = self.__dict__.get("_fingerprint")
        if digest is None:
            import torch

            h = hashlib.sha256(self.model.config.to_json_string().encode())
            h.update(f"{len(self.tokenizer)}{getattr(self.tokenizer, 'chat_template', None)}".encode())
            with torch.inference_mode():
                for name, tensor in state_tensors(self.model):
                    h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
                    data = tensor.detach().to("cpu").contiguous().reshape(-1)
                    h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
            digest = self.__dict__["_fingerprint"] = h.hexdigest()
        return digest

    def load(self) -> None:
        if self._source is not None:
            source, kwargs = self._source
            self._load_from(source, **kwargs)
        else:
            self._load_from(self.settings.name_or_path, **self._load_kwargs())

    def _load_kwargs(self) -> Dict[str, Any]:
        return {"revision": self.settings.revision, "trust_remote_code": trusts_remote_code(self.settings.name_or_path)}

    def _stop_ids(self) -> set:
        """The ids that end an answer: pad, the tokenizer's and the model's end of sequence."""
        stop = {self.tokenizer.pad_token_id, self.tokenizer.eos_token_id}
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        stop.update(eos if isinstance(eos, list) else [eos])
        return stop

    def _count(self, attention_mask: Any, new_ids: Any) -> None:
        """Add a generate call's prompt tokens and generated tokens (up to and
        including the first end-of-sequence token of each row) to `stats`."""
        stop = self._stop_ids()
        generated = 0
        for row in new_ids.tolist():
            generated += next((i + 1 for i, t in enumerate(row) if t in stop), len(row))
        self._record(attention_mask, generated)

    def _record(self, attention_mask: Any, generated: int) -> None:
        """Add one call over a batch (its prompts' attention mask) to `stats`."""
        self.stats["generate_calls"] += 1
        self.stats["prompt_tokens"] += int(attention_mask.sum())
        self.stats["generated_tokens"] += generated

    def _load_from(self, source: Union[str, Path], *, adapter_merged: bool = False, **kwargs: Any) -> None:
        """Load the tokenizer and weights from `source` (a folder or hub id), merge
        the adapter unless `adapter_merged` (the weights hold it already), and
        lay the weights out for this machine's kernels."""
        import transformers

        device = resolve_device(self.settings.device)
        with self.lock:
            tokenizer_kwargs = {k: v for k, v in kwargs.items() if k != "use_safetensors"}
            self.tokenizer = load_pretrained(transformers.AutoTokenizer, source, **tokenizer_kwargs)
            # Straight onto the device: no float copy of the weights on the CPU first.
            dtype = resolve_dtype(self.settings.dtype, device, self.half_dtype)
            adapter = None if adapter_merged else self._adapter_folder()
            # Packing replaces every linear weight after loading: read into owned memory,
            # so the old ones are freed. A merged adapter alone needs no such care: it
            # rewrites memory-mapped weights in place (one private copy of those pages),
            # and the embedding's rows never read stay on disk.
            int4 = self.settings.weights == "int4"
            if int4 and device != "cpu":
                raise ModelLoadError(f"model.weights = 'int4' runs on the CPU only, not on {device}")
            rewrites = packs(dtype) or int4
            auto_class = getattr(transformers, self.auto_model)
            model = load_model(auto_class, str(source), dtype, device, rewrites=rewrites, **kwargs)
            model.eval()
            if adapter is not None:
                from ..adapters import merge_adapter

                merge_adapter(model, adapter)
            if int4:
                quantize_linear_weights(model)
            # Half-precision weights laid out once for the CPU's kernels, and grouped-query
            # attention without a copy of the cache: the same outputs, faster steps.
            pack_linear_weights(model)
            use_gqa_attention(model)
            self.model = model
            self.__dict__["_fingerprint"] = None
            self._source = (str(source), {**kwargs, "adapter_merged": adapter_merged})

    def _adapter_folder(self) -> Optional[Path]:
        """The adapter to merge into the weights being loaded: the pipeline
        folder's copy when loaded from one, else `adapter` as configured."""
        if not self.settings.adapter:
            return None
        if "_adapter_dir" in self.__dict__:
            return self.__dict__["_adapter_dir"]
        from ..adapters import resolve_adapter

        return resolve_adapter(self.settings.adapter)

    def count_tokens(self, texts: Sequence[str]) -> List[int]:
        if not texts:
            return []
        with self.lock:
            encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def roundtrip(self, words: Sequence[str]) -> List[str]:
        if not words:
            return []
        with self.lock:
            ids = self.tokenizer(list(words), add_special_tokens=False)["input_ids"]
            return self.tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def to_disk(self, path: Path) -> None:
        self.ensure_loaded()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with self.lock:
            save_dequantized(self.model, path)
            self.tokenizer.save_pretrained(path)

    def from_disk(self, path: Path) -> None:
        # The saved weights have the adapter merged in (to_disk saves the model as it runs).
        self.__dict__["_adapter_dir"] = None
        # A pipeline folder is untrusted: its code is never run (no trust_remote_code,
        # whatever the environment says) and its weights are never unpickled.
        self._load_from(Path(path), local_files_only=True, use_safetensors=True)
