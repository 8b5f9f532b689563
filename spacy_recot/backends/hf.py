"""Hugging Face models in process: loading (offline-safe, code never run from a
pipeline folder), the `generate` settings a config may give, and what the
seq2seq and causal backends share (token counts, saving, the weight
fingerprint, a LoRA adapter merged at load)."""

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..errors import ModelLoadError
from ..generation.gqa_attention import use_gqa_attention
from ..generation.packed_weights import pack_linear_weights, packs
from .base import Backend
from .devices import check_dtype, resolve_device, resolve_dtype

# What every Hugging Face backend needs installed (pip requirement strings):
# `spacy package` lists them for a pipeline, and a missing one is named.
HF_REQUIREMENTS = ("torch>=2.1", "transformers>=5.0,<6", "accelerate>=1.0", "sentencepiece>=0.2", "safetensors>=0.4")


def _looks_like_path(name_or_path: str) -> bool:
    return (
        name_or_path.startswith((".", "/", "~"))
        or os.sep in name_or_path.strip("/").replace("/", "", 1)
        or (os.name == "nt" and ":" in name_or_path)
    )


# The environment variable that names the models (comma-separated, as written in
# model.name_or_path) whose own Python code the user has read and trusts: set when
# running, never in a config, and never applied to a pipeline folder.
TRUST_REMOTE_CODE_ENV = "SPACY_RECOT_TRUST_REMOTE_CODE"


def trusts_remote_code(name_or_path: str) -> bool:
    """Whether the user trusts the code that comes with `name_or_path` (named in
    $SPACY_RECOT_TRUST_REMOTE_CODE when running)."""
    names = os.environ.get(TRUST_REMOTE_CODE_ENV, "")
    return str(name_or_path) in {name.strip() for name in names.split(",") if name.strip()}


def load_pretrained(
    loader: Any, name_or_path: Union[str, Path], *, trust_remote_code: bool = False, **kwargs: Any
) -> Any:
    """`loader.from_pretrained(name_or_path)` with an error that says what to do.

    trust_remote_code (bool): Run Python code that comes with the model (its
        config's `auto_map`). Always passed, so transformers never asks on the
        terminal whether to run it (a careless "y" would).
    """
    source = str(name_or_path)
    if _looks_like_path(source) and not Path(source).expanduser().exists():
        raise ModelLoadError(f"No model folder at '{source}' (model.name_or_path): the path does not exist.")
    try:
        return loader.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError) as err:
        if "trust_remote_code" in str(err):
            raise ModelLoadError(
                f"'{source}' (model.name_or_path) holds custom code that transformers would have to "
                "run to load it: refused. A pipeline folder's code is never run; for a model whose code "
                f"you have read, name it when running: {TRUST_REMOTE_CODE_ENV}={source}"
            ) from None
        where = (
            "the folder has no loadable model in it"
            if Path(source).expanduser().is_dir()
            else "it is not a local folder, and the Hugging Face Hub could not provide it "
            "(no network, or no such model)"
        )
        raise ModelLoadError(
            f"Could not load '{source}' (model.name_or_path) with {loader.__name__}: {where}. "
            f"{type(err).__name__}: {err}"
        ) from err


def save_dequantized(model: Any, path: Path) -> None:
    """`save_pretrained` that also works for a model loaded from a GGUF file.

    transformers dequantizes GGUF weights to float on load but keeps the GGUF
    quantizer attached, which refuses to save; the weights are plain floats,
    so that quantizer (and only that one) is dropped and they are saved as
    safetensors.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is not None and str(getattr(method, "value", method)) == "gguf":
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    model.save_pretrained(path)


def state_tensors(model: Any) -> Iterator[Tuple[str, Any]]:
    """The (name, tensor) pairs of `model.state_dict()`, in its order, one at a
    time: a weight packed for oneDNN is made dense only while it is read, where
    `state_dict()` would hold a dense copy of every packed weight at once (as much
    memory again as the model's linear layers)."""
    import torch

    for prefix, module in model.named_modules(remove_duplicate=False):
        prefix = f"{prefix}." if prefix else ""
        for name, param in module._parameters.items():
            if param is not None:
                yield prefix + name, param.to_dense() if param.layout == torch._mkldnn else param
        for name, buffer in module._buffers.items():
            if buffer is not None and name not in module._non_persistent_buffers_set:
                yield prefix + name, buffer


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
    """

    # The settings the answers depend on (the response cache's key).
    IDENTITY: ClassVar[Tuple[str, ...]] = ("name_or_path", "revision", "device", "dtype", "generation", "adapter")

    name_or_path: str
    revision: Optional[str] = None
    device: str = "auto"
    dtype: str = "auto"
    max_input_tokens: int = 640
    generation: Dict[str, Any] = field(default_factory=dict)
    adapter: Optional[str] = None

    def __post_init__(self) -> None:
        check_dtype(self.dtype)
        if (
            isinstance(self.max_input_tokens, bool)
            or not isinstance(self.max_input_tokens, int)
            or self.max_input_tokens < 1
        ):
            raise ValueError(f"model.max_input_tokens must be a positive integer, not {self.max_input_tokens!r}")
        check_generation(self.generation)
        if self.adapter is not None:
            object.__setattr__(self, "adapter", str(self.adapter))


def read_weights(folder: Path, model_class: Any, dtype: Any) -> Optional[Dict[str, Any]]:
    """The safetensors weights of a local model folder, read into memory this
    process owns, each floating-point tensor cast to `dtype` as it is read
    (except in the modules the model class keeps in float32); None when the
    folder has no safetensors weights.

    Why not transformers' default, a memory map of the file: a weight changed in
    place after loading (a merged adapter) becomes a private copy inside the
    mapping, and the mapping lives as long as any weight read from it does, so
    a weight replaced afterwards (packed for oneDNN) keeps its old pages: two
    copies of the linear layers. And a file in another precision is cast whole
    beside itself. Read one tensor at a time, the peak is the weights as they
    run plus one tensor (benchmarks/memory.py).
    """
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    elif (folder / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        return None
    keep = tuple(getattr(model_class, "_keep_in_fp32_modules", None) or ())
    keep += tuple(getattr(model_class, "_keep_in_fp32_modules_strict", None) or ())
    state = {}
    for name in files:
        # pread: copies into the tensors' own memory, no mapping kept.
        with safe_open(str(folder / name), framework="pt", device="cpu", backend="pread") as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                if tensor.is_floating_point() and tensor.dtype != dtype and not any(m in key for m in keep):
                    tensor = tensor.to(dtype)
                state[key] = tensor
    return state


def load_model(auto_class: Any, source: str, dtype: Any, device: str, *, rewrites: bool, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained(source, ...)`, reading a local safetensors
    folder with `read_weights` (into memory the process owns) when the model
    runs on the CPU and its weights are replaced after loading (`rewrites`:
    packed for oneDNN) or stored in another precision: the same weights, one
    copy. Otherwise as transformers loads them: memory-mapped,
    pages shared by every process that maps the file."""
    import torch
    import transformers

    folder = Path(source).expanduser()
    if device == "cpu" and isinstance(dtype, torch.dtype) and folder.is_dir() and not kwargs.get("trust_remote_code"):
        try:
            # Never its code: a folder that needs it is refused by load_pretrained below.
            config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            model_class = auto_class._model_mapping[type(config)]
        except (OSError, ValueError, KeyError):
            model_class = None
        stored = getattr(config, "dtype", None) if model_class is not None else None
        stored = getattr(torch, stored, None) if isinstance(stored, str) else stored
        if (
            model_class is not None
            and getattr(config, "quantization_config", None) is None
            and (rewrites or stored != dtype)
        ):
            state = read_weights(folder, model_class, dtype)
            if state is not None:
                model = model_class.from_pretrained(None, config=config, state_dict=state, dtype=dtype)
                if (folder / "generation_config.json").exists():
                    model.generation_config = transformers.GenerationConfig.from_pretrained(folder)
                return model
    return load_pretrained(auto_class, source, dtype=dtype, device_map=device, **kwargs)


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
            rewrites = packs(dtype)
            auto_class = getattr(transformers, self.auto_model)
            model = load_model(auto_class, str(source), dtype, device, rewrites=rewrites, **kwargs)
            model.eval()
            if adapter is not None:
                from ..adapters import merge_adapter

                merge_adapter(model, adapter)
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
