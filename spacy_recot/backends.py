"""Model backends: text in, text out, weights loaded on demand.

A backend is called with a batch of `Request`s and returns one generated text
per request. Weights are not loaded when the backend is built (so that a
config can be resolved, and `spacy.load` can read the weights from the
pipeline folder, without touching the network); `load()` reads them from
`name_or_path`, `from_disk()` from a pipeline folder.
"""

import copy
import functools
import hashlib
import json
import os
import tempfile
import threading
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import srsly
from spacy.util import registry

from .chunks import Request
from .errors import ModelLoadError
from .gqa_attention import NAME as GQA_ATTENTION
from .gqa_attention import use_gqa_attention
from .packed_weights import pack_linear_weights
from .scores import TokenLogprobRecorder, scored_answer

# What every Hugging Face backend needs installed (pip requirement strings):
# `spacy package` lists them for a pipeline, and a missing one is named.
HF_REQUIREMENTS = ("torch>=2.1", "transformers>=5.0,<6", "accelerate>=1.0", "sentencepiece>=0.2", "safetensors>=0.4")
# Constrained decoding: installed with --no-deps (its metadata pulls the GPU-only triton).
XGRAMMAR_REQUIREMENT = "xgrammar==0.2.8"


class Backend:
    """What the component needs of a backend. Subclasses override what applies.

    A backend is called with a batch of `Request`s and returns one text per
    request. Calls are serialised by a lock (a tokenizer is not safe to share
    between threads), and a pickled backend (`nlp.pipe(n_process=2)` under
    spawn) carries its settings, not its weights: a worker loads them lazily
    from where the parent loaded them.
    """

    # The output formats the backend can write ("bio", "entities").
    output_formats: Tuple[str, ...] = ("bio", "entities")
    # The prompt used when the component's config gives none (a registry name).
    default_prompt: str = "spacy_recot.ZeroShotJSONPrompt.v1"
    # The largest prompt, in the backend's tokens; None for no limit.
    max_input_tokens: Optional[int] = None
    # The longest answer, in the backend's tokens; None for no limit.
    max_new_tokens: Optional[int] = None
    # Attributes that hold loaded state: dropped when pickled, rebuilt on use.
    _transient: Tuple[str, ...] = ()

    # Settings that change how requests travel, not what is answered: left out of `identity`.
    _transport_settings: Tuple[str, ...] = ()

    @property
    def is_loaded(self) -> bool:
        return True

    def load(self) -> None:
        """Load the weights from the configured source (may use the network)."""

    def ensure_loaded(self) -> None:
        """Load on first use (once, even from several threads)."""
        with self.lock:
            if not self.is_loaded:
                self.load()

    def identity(self) -> Dict[str, Any]:
        """What the answers depend on: the backend's class, its settings and a
        fingerprint of its weights (the response cache's key)."""
        skip = {"stats", *self._transient, *self._transport_settings}
        settings = {}
        for key, value in sorted(vars(self).items()):
            if key.startswith("_") or key in skip:
                continue
            value = str(value) if isinstance(value, Path) else value
            try:
                json.dumps(value, sort_keys=True)
            except (TypeError, ValueError):
                continue  # loaded state, not a setting
            settings[key] = value
        from . import __version__

        return {
            "backend": f"{type(self).__module__}.{type(self).__qualname__}",
            # Decoding code changes between releases: answers cached by another release are not reused.
            "version": __version__,
            "settings": settings,
            "weights": self.fingerprint(),
        }

    def fingerprint(self) -> Optional[str]:
        """A digest of the loaded weights, or None for a backend without any."""
        return None

    def requirements(self) -> List[str]:
        """The pip requirements this backend needs at run time."""
        return []

    def count_tokens(self, texts: Sequence[str]) -> List[int]:
        """The length of each text in the backend's tokens, special tokens not counted."""
        return [len(text.split()) for text in texts]

    def prompt_tokens(self, prompt: str) -> int:
        """What a prompt costs in tokens, with the special tokens or chat
        template the backend wraps it in."""
        # 2: the special tokens (</s>) a seq2seq tokenizer adds around a prompt
        return self.count_tokens([prompt])[0] + 2

    def roundtrip(self, words: Sequence[str]) -> List[str]:
        """The words as the model can write them back (GNER's back-tokenization)."""
        return list(words)

    @property
    def lock(self) -> threading.RLock:
        lock = self.__dict__.get("_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_lock", threading.RLock())
        return lock

    def __call__(self, requests: Sequence[Request]) -> List[str]:
        """One answer per request, generated in one batch. A backend that sends
        requests one by one (a server) may give an exception in place of an
        answer: that request failed for good, and only its doc goes to the
        error handler."""
        if not requests:
            return []
        self.ensure_loaded()
        with self.lock:
            stats = self.__dict__.setdefault("stats", Counter())
            stats["backend_calls"] += 1
            stats["requests"] += len(requests)
            stats["largest_batch"] = max(stats["largest_batch"], len(requests))
            answers = self.generate(requests)
        if len(answers) != len(requests):
            raise RuntimeError(f"{type(self).__name__} gave {len(answers)} answers for {len(requests)} requests")
        return answers

    def generate(self, requests: Sequence[Request]) -> List[str]:
        raise NotImplementedError

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("_lock", "_bytes_dir") + self._transient:
            state.pop(key, None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        for key in self._transient:
            self.__dict__.setdefault(key, None)

    def to_disk(self, path: Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)

    def from_disk(self, path: Path) -> None:
        pass

    def to_bytes(self) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            self.to_disk(Path(tmp))
            return _folder_to_bytes(Path(tmp))

    def from_bytes(self, data: bytes) -> None:
        # The folder lives as long as the backend: loaded weights may be
        # memory-mapped from it, and a worker process reloads from it.
        self._bytes_dir = tempfile.TemporaryDirectory(prefix="spacy_recot_")
        _bytes_to_folder(data, Path(self._bytes_dir.name))
        self.from_disk(Path(self._bytes_dir.name))


def _folder_to_bytes(folder: Path) -> bytes:
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return srsly.msgpack_dumps({"files": files})


def _plain_relative_path(name: Any) -> bool:
    """Whether `name` (from a byte payload) names a file inside a folder on any
    system: "/"-separated parts, none empty, "." or "..", no drive, no backslash."""
    if not isinstance(name, str) or not name or "\\" in name or ":" in name or "\x00" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _bytes_to_folder(data: bytes, folder: Path) -> None:
    """Write the files of a `_folder_to_bytes` payload into `folder`. The payload
    is untrusted: a name that is not a plain relative path (absolute, `..`, a
    drive) is refused before anything is written."""
    payload = srsly.msgpack_loads(data)
    files = payload.get("files") if isinstance(payload, dict) else None
    if not isinstance(files, dict):
        raise ValueError("The model's bytes hold no file table (not written by to_bytes)")
    for name, content in files.items():
        if not _plain_relative_path(name) or not isinstance(content, bytes):
            raise ValueError(f"The model's bytes name a file {name!r}, which is not a plain relative path: refused")
    root = folder.resolve()
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # The folder is new and only we write into it, so no link can lead outside; checked anyway.
        if not target.parent.resolve().is_relative_to(root):
            raise ValueError(f"The model's bytes name a file {name!r} outside their folder: refused")
        target.write_bytes(content)


def _looks_like_path(name_or_path: str) -> bool:
    return (
        name_or_path.startswith((".", "/", "~"))
        or os.sep in name_or_path.strip("/").replace("/", "", 1)
        or (os.name == "nt" and ":" in name_or_path)
    )


def resolve_device(device: str) -> str:
    """The torch device for a `device` setting.

    "auto" follows spaCy: after `spacy.require_gpu(i)` or a successful
    `spacy.prefer_gpu(i)` the model goes to that GPU; otherwise to the first
    CUDA GPU when torch sees one, else to the CPU.
    """
    import torch

    if device != "auto":
        return device
    try:
        from thinc.api import get_current_ops

        ops = get_current_ops()
        if type(ops).__name__ == "CupyOps":
            return f"cuda:{torch.cuda.current_device()}"
        if type(ops).__name__ == "MPSOps":
            return "mps"
    except ImportError:  # pragma: no cover - thinc comes with spaCy
        pass
    return "cuda" if torch.cuda.is_available() else "cpu"


DTYPES = ("auto", "float32", "float16", "bfloat16", "float64")


def check_dtype(dtype: str) -> None:
    """Refuse a dtype name torch does not have, before anything is loaded."""
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r} (model.dtype): use one of {list(DTYPES)}")


def _torch_cpu_probe(name: str) -> bool:
    import torch

    # Private probes, so each is guarded: an older or newer torch answers "no".
    return bool(getattr(torch.cpu, name, lambda: False)())


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX):
    there bfloat16 matrix products are several times faster than float32."""
    return _torch_cpu_probe("_is_avx512_bf16_supported") or _torch_cpu_probe("_is_amx_tile_supported")


@functools.lru_cache(maxsize=1)
def cpu_has_fp16() -> bool:
    """Whether this CPU has float16 arithmetic (AVX-512 FP16, Sapphire Rapids
    and later); torch has no probe for it, so Linux's CPU flags are read (once
    a process)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and "avx512_fp16" in line.split() for line in f)
    except OSError:
        return False


def resolve_dtype(dtype: str, device: str, half: str = "float16") -> Any:
    """The torch dtype for a `dtype` setting on `device`.

    "auto" picks the fastest precision that keeps answers (measured in
    docs/speed.md). On a CPU: bfloat16 with AMX (its matrix units); else
    float16 where the CPU has float16 arithmetic (AVX-512 FP16) and the model
    survives it (`half` is "float16": T5 overflows, its backend passes
    "float32"), which is faster than bfloat16 there and closer to float32;
    else bfloat16 where the CPU computes in it (AVX-512 BF16); else float32
    (emulated half precision is slower). On a GPU bfloat16 where supported,
    else `half`. Untested here on GPU. (Measured on both kinds of CPU on
    2026-12-01 with the default model: with AMX bfloat16 is 2.1x float16's
    speed; without it float16 is faster; both within noise of float32.)
    """
    import torch

    if dtype == "auto":
        if device == "cpu":
            if _torch_cpu_probe("_is_amx_tile_supported"):
                return torch.bfloat16
            if half == "float16" and cpu_has_fp16():
                return torch.float16
            return torch.bfloat16 if cpu_has_bf16() else torch.float32
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else getattr(torch, half)
        return "auto"
    try:
        return getattr(torch, dtype)
    except AttributeError:
        raise ModelLoadError(
            f"Unknown dtype '{dtype}' (model.dtype): use auto, float32, bfloat16 or float16."
        ) from None


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


class HFBackend(Backend):
    """What the Hugging Face backends share: loading, token counts, saving."""

    auto_model: str = ""  # the transformers Auto class that loads the weights
    # The half precision the model survives: dtype "auto" on a GPU without
    # bfloat16 or on a CPU with float16 arithmetic (see resolve_dtype).
    half_dtype: str = "float16"
    _transient = ("model", "tokenizer")

    def __init__(
        self,
        name_or_path: str,
        *,
        revision: Optional[str] = None,
        device: str = "auto",
        dtype: str = "auto",
        max_input_tokens: int = 640,
        generation: Optional[Dict[str, Any]] = None,
        adapter: Optional[str] = None,
    ):
        self.name_or_path = name_or_path
        # A LoRA adapter merged into the weights at load (spacy_recot.adapters).
        self.adapter = str(adapter) if adapter else None
        self.revision = revision
        self.device_name = device
        self.dtype_name = dtype
        check_dtype(dtype)
        if not isinstance(max_input_tokens, int) or max_input_tokens < 1:
            raise ValueError(f"model.max_input_tokens must be a positive integer, not {max_input_tokens!r}")
        self.max_input_tokens = max_input_tokens
        self.generation = check_generation(dict(generation or {}))
        self.max_new_tokens = self.generation.get("max_new_tokens")
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
            # A grammar belongs to one tokenizer, a prefix cache to one model.
            self.__dict__["_constraint"] = self.__dict__["_prefix"] = self.__dict__["_fingerprint"] = None

    def release(self) -> None:
        """Drop the model and tokenizer (they are loaded again on next use)."""
        with self.lock:
            self.model = self.tokenizer = None
            self.__dict__["_constraint"] = self.__dict__["_prefix"] = self.__dict__["_fingerprint"] = None

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
                for name, tensor in self.model.state_dict().items():
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
            self._load_from(self.name_or_path, **self._load_kwargs())

    def _load_kwargs(self) -> Dict[str, Any]:
        return {"revision": self.revision, "trust_remote_code": trusts_remote_code(self.name_or_path)}

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

    def _load_from(self, source: Union[str, Path], **kwargs: Any) -> None:
        import transformers

        device = resolve_device(self.device_name)
        with self.lock:
            tokenizer_kwargs = {k: v for k, v in kwargs.items() if k != "use_safetensors"}
            self.tokenizer = load_pretrained(transformers.AutoTokenizer, source, **tokenizer_kwargs)
            # Straight onto the device: no float copy of the weights on the CPU first.
            model = load_pretrained(
                getattr(transformers, self.auto_model),
                source,
                dtype=resolve_dtype(self.dtype_name, device, self.half_dtype),
                device_map=device,
                **kwargs,
            )
            model.eval()
            adapter = self._adapter_folder()
            if adapter is not None:
                from .adapters import merge_adapter

                merge_adapter(model, adapter)
            # Half-precision weights laid out once for the CPU's kernels, and grouped-query
            # attention without a copy of the cache: the same outputs, faster steps.
            pack_linear_weights(model)
            use_gqa_attention(model)
            self.model = model
            self.__dict__["_fingerprint"] = None
            self._source = (str(source), dict(kwargs))

    def _adapter_folder(self) -> Optional[Path]:
        """The adapter to merge into the weights being loaded: the pipeline
        folder's copy when loaded from one, else `adapter` as configured."""
        if not self.adapter:
            return None
        if "_adapter_dir" in self.__dict__:
            return self.__dict__["_adapter_dir"]
        from .adapters import resolve_adapter

        return resolve_adapter(self.adapter)

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


class HFSeq2SeqBackend(HFBackend):
    """A Hugging Face encoder-decoder model (T5, Flan-T5, GNER-T5) run with `generate`.

    T5's vocabulary cannot write "{" or "}", so it writes BIO output only.
    """

    auto_model = "AutoModelForSeq2SeqLM"
    output_formats = ("bio",)
    half_dtype = "float32"  # T5's activations overflow float16
    # Published seq2seq NER checkpoints (GNER-T5) were trained on GNER's instruction.
    default_prompt = "spacy_recot.GNERPrompt.v1"

    # How answers are decoded: "free" (generate as configured), "constrained"
    # (token by token, only the words and valid BIO tags), "forced" (the same
    # answers by parallel fixed-point iteration; see bio_decoding.py).
    DECODINGS = ("free", "constrained", "forced")

    def __init__(self, name_or_path: str, *, decoding: str = "free", **kwargs: Any):
        super().__init__(name_or_path, **kwargs)
        if decoding not in self.DECODINGS:
            raise ValueError(f"Unknown decoding {decoding!r} (model.decoding): use one of {list(self.DECODINGS)}")
        self.decoding = decoding

    def _encode(self, requests: Sequence[Request]) -> Any:
        return self.tokenizer(
            [r.prompt for r in requests],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_input_tokens,
        ).to(self.model.device)

    def generate(self, requests: Sequence[Request]) -> List[str]:
        import torch

        enc = self._encode(requests)
        if self.decoding != "free":
            return self._generate_bio(requests, enc)
        with torch.inference_mode():
            out = self.model.generate(**enc, **self.generation)
        self._count(enc["attention_mask"], out[:, 1:])  # T5 starts with the pad token
        return self.tokenizer.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _generate_bio(self, requests: Sequence[Request], enc: Any) -> List[str]:
        """Answers that copy the words and choose only valid BIO tags."""
        from .bio_decoding import WordChoices, answer_text, constrained_generate, forced_decode

        choices = [WordChoices.build(self.tokenizer, r.chunk.words, r.labels) for r in requests]
        if self.decoding == "constrained":
            generation = {k: v for k, v in self.generation.items() if k != "max_new_tokens"}
            out = constrained_generate(self.model, enc, choices, **generation)
            self._count(enc["attention_mask"], out[:, 1:])
            return self.tokenizer.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        tags, counts = forced_decode(self.model, enc, choices)
        self.stats.update(counts)
        self._record(enc["attention_mask"], sum(len(c.sequence(t)) for c, t in zip(choices, tags)))
        return [answer_text(c, t, self.tokenizer) for c, t in zip(choices, tags)]


def _warn_v1_generation(name: str, generation: Dict[str, Any]) -> None:
    if "max_new_tokens" not in generation:
        warnings.warn(
            f"{name}: the `generation` block has no max_new_tokens, so answers are cut at the "
            "model's default length (often 20 tokens). Use the v2 backend, whose max_new_tokens "
            "is a setting of its own and whose `generation` is merged over the defaults.",
            stacklevel=3,
        )


@registry.misc("spacy_recot.HFSeq2Seq.v1")
def make_hf_seq2seq(
    name_or_path: str,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: str = "auto",
    max_input_tokens: int = 640,
    generation: Dict[str, Any] = {"max_new_tokens": 640, "num_beams": 1, "do_sample": False},
) -> HFSeq2SeqBackend:
    """A seq2seq model in Hugging Face format (superseded by v2: here a given
    `generation` block replaces the defaults, max_new_tokens included)."""
    _warn_v1_generation("spacy_recot.HFSeq2Seq.v1", generation)
    return HFSeq2SeqBackend(
        name_or_path,
        revision=revision,
        device=device,
        dtype=dtype,
        max_input_tokens=max_input_tokens,
        generation=generation,
    )


@registry.misc("spacy_recot.HFSeq2Seq.v2")
def make_hf_seq2seq_v2(
    name_or_path: str,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: str = "auto",
    max_input_tokens: int = 640,
    max_new_tokens: int = 640,
    generation: Dict[str, Any] = {},
) -> HFSeq2SeqBackend:
    """A seq2seq model in Hugging Face format (a local folder or a hub id):
    T5, Flan-T5, GNER-T5, ReCoT-NER.

    name_or_path (str): A folder written by `save_pretrained` or a hub id such as
        "dyyyyyyyy/GNER-T5-base".
    device (str): "auto" (spaCy's GPU after `spacy.require_gpu`, else a GPU when
        torch sees one, else the CPU), "cpu", "cuda", "cuda:1", ...
    dtype (str): "auto" (bfloat16 on a CPU that computes in it natively and on
        GPUs that support it, else float32) or a torch dtype name.
    max_input_tokens (int): Longer docs are split into chunks that fit.
    max_new_tokens (int): The longest answer; docs are split so that the BIO
        answer (every word with its tag) fits.
    generation (Dict[str, Any]): Keyword arguments for `model.generate`, merged
        over the defaults (greedy: num_beams 1, do_sample false).
    """
    return make_hf_seq2seq_v3(
        name_or_path,
        revision=revision,
        device=device,
        dtype=dtype,
        max_input_tokens=max_input_tokens,
        max_new_tokens=max_new_tokens,
        decoding="free",
        generation=generation,
    )


@registry.misc("spacy_recot.HFSeq2Seq.v3")
def make_hf_seq2seq_v3(
    name_or_path: str,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: str = "auto",
    max_input_tokens: int = 640,
    max_new_tokens: int = 640,
    decoding: str = "forced",
    generation: Dict[str, Any] = {},
) -> HFSeq2SeqBackend:
    """A seq2seq model in Hugging Face format whose BIO answers copy the words.

    decoding (str): "forced" (default): the words are forced and only the tags
        decided, under valid BIO over the offered labels, by parallel
        fixed-point iteration: the answers of constrained greedy decoding in a
        few decoder passes. "constrained": the same answers token by token
        through `generate`. "free": plain `generate` with `generation`.
    dtype (str): "auto": bfloat16 on a CPU that computes in it natively and on
        GPUs that support it, else float32.
    The other settings are those of `spacy_recot.HFSeq2Seq.v2`; `generation`
    applies to "free" (and, but for its length, "constrained").
    """
    return HFSeq2SeqBackend(
        name_or_path,
        revision=revision,
        device=device,
        dtype=dtype,
        max_input_tokens=max_input_tokens,
        decoding=decoding,
        generation=merge_generation({"num_beams": 1, "do_sample": False}, generation, max_new_tokens),
    )


def check_xgrammar() -> None:
    """Fail with the command to run when constrained decoding cannot work."""
    try:
        import xgrammar  # noqa: F401
    except ImportError as err:
        raise ModelLoadError(
            "constrained = true (model.constrained) needs xgrammar, which is not installed. "
            'Install it with: pip install "spacy-recot[default]" (or, to skip the GPU-only '
            f"triton it pulls, pip install --no-deps {XGRAMMAR_REQUIREMENT} apache-tvm-ffi pydantic). "
            f"{type(err).__name__}: {err}"
        ) from err


# Guessed tokens per greedy step, shared by the active answers (see HFCausalBackend._greedy).
DEFAULT_DRAFT_TOKENS = 16


def full_attention(cache: Any) -> bool:
    """Whether every layer of a transformers cache keeps every position (no
    sliding window, no recurrent state): only such caches can hold masked-out
    positions or be laid side by side."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


def lookup_draft(context: Sequence[int], n: int, longest_ngram: int = 3) -> List[int]:
    """Up to `n` tokens guessed to follow `context`: what followed the latest
    earlier occurrence of its last `longest_ngram` tokens (or fewer: down to 1).
    Prompt lookup decoding (Saxena 2023, `prompt_lookup_num_tokens` in
    transformers), which `generate` cannot combine with our loop."""
    end = len(context)
    for size in range(min(longest_ngram, end - 1), 0, -1):
        tail = list(context[end - size :])
        first = tail[0]
        for start in range(end - size - 1, -1, -1):
            if context[start] == first and list(context[start : start + size]) == tail:
                return list(context[start + size : start + size + n])
    return []


def answer_cap(budget: Optional[int]) -> Optional[int]:
    """The most tokens an answer without reasoning may take: twice its budget
    plus 16, room for the indented JSON models copy from the prompt, none for an
    answer that repeats itself until max_new_tokens (it holds up its batch, or
    a server's slot). None when the budget is unknown."""
    return None if budget is None else 2 * budget + 16


class AnswerCap:
    """Each answer's cap of new tokens (None: no cap), which does not apply to
    an answer that opened with a `<think>` block (no budget knows its length).
    Used by the greedy loop (`reached`) and, as a stopping criterion, by
    `generate`, where a row that ends early is padded while the batch goes on."""

    def __init__(self, caps: Sequence[Optional[int]], tokenizer: Any, prompt_length: int = 0):
        self.caps = list(caps)
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.thinking = [False] * len(self.caps)

    def reached(self, row: int, new_ids: Sequence[int]) -> bool:
        """Whether answer `row`, with these new tokens so far, is at its cap."""
        n = len(new_ids)
        if n <= 8:  # how the answer opens is known after a few tokens
            self.thinking[row] = self.tokenizer.decode(new_ids).lstrip().startswith("<think")
        cap = self.caps[row]
        return cap is not None and n >= cap and not self.thinking[row]

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        rows = input_ids[:, self.prompt_length :].tolist()
        return torch.tensor([self.reached(r, ids) for r, ids in enumerate(rows)], device=input_ids.device)


def overflow_error(name_or_path: str, dtype: Any) -> FloatingPointError:
    """The error for a model whose activations overflowed its precision."""
    return FloatingPointError(
        f"'{name_or_path}' computed non-finite values in {dtype} "
        "(its activations overflow it): set model.dtype to float32 or bfloat16"
    )


class OverflowCheck:
    """A logits processor, placed before any of ours, that stops `generate` with
    `overflow_error` on NaN or +inf scores (-inf is how processors forbid a
    token), as the greedy loop does on any non-finite output."""

    def __init__(self, name_or_path: str, dtype: Any):
        self.name_or_path, self.dtype = name_or_path, dtype

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if torch.isnan(scores).any() or torch.isposinf(scores).any():
            raise overflow_error(self.name_or_path, self.dtype)
        return scores


class HFCausalBackend(HFBackend):
    """A Hugging Face causal chat model (Qwen3, Qwen2.5, SmolLM2, ...) run with `generate`.

    Each prompt becomes the user turn of the tokenizer's chat template; prompts
    are left-padded so a batch generates together; only the new tokens are
    decoded. With `constrained`, the answer's JSON is generated under a grammar
    (see `constraints.py`), so the backend writes entity-list output only.
    """

    auto_model = "AutoModelForCausalLM"
    _transient = ("model", "tokenizer", "_constraint", "_prefix")
    # Shorter shared beginnings are not worth a cache of their own.
    MIN_SHARED_PREFIX = 16

    def __init__(
        self,
        name_or_path: str,
        *,
        gguf_file: Optional[str] = None,
        thinking: Optional[bool] = None,
        system_prompt: Optional[str] = None,
        constrained: bool = False,
        max_entity_words: int = 12,
        reuse_prefix: bool = True,
        draft_tokens: int = 0,
        **kwargs: Any,
    ):
        super().__init__(name_or_path, **kwargs)
        self.reuse_prefix = reuse_prefix
        if not isinstance(draft_tokens, int) or isinstance(draft_tokens, bool) or draft_tokens < 0:
            raise ValueError(f"model.draft_tokens must be a non-negative integer, not {draft_tokens!r}")
        self.draft_tokens = draft_tokens
        self._prefix: Optional[Tuple[Tuple[int, ...], Any]] = None
        self.gguf_file = gguf_file
        self.thinking = thinking
        self.system_prompt = system_prompt
        self.constrained = constrained
        if not isinstance(max_entity_words, int) or max_entity_words < 1:
            raise ValueError(f"model.max_entity_words must be a positive integer, not {max_entity_words!r}")
        self.max_entity_words = max_entity_words
        self._constraint: Any = None
        if constrained:
            self.output_formats = ("entities",)

    def requirements(self) -> List[str]:
        return super().requirements() + ([XGRAMMAR_REQUIREMENT] if self.constrained else [])

    def _load_kwargs(self) -> Dict[str, Any]:
        kwargs = super()._load_kwargs()
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        return kwargs

    def _load_from(self, source: Union[str, Path], **kwargs: Any) -> None:
        if self.constrained:
            check_xgrammar()
        super()._load_from(source, **kwargs)
        tokenizer = self.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            self.model = None
            raise ModelLoadError(
                f"'{source}' (model.name_or_path) has a tokenizer without a chat template: "
                "spacy_recot.HFCausal needs an instruction (chat) model"
            )
        # Decoder-only models continue the last token: pad on the left.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._constraint = self._prefix = None

    def chat(self, prompt: str) -> str:
        """The prompt as the user turn of the chat template, ready for the answer."""
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        extra = {} if self.thinking is None else {"enable_thinking": self.thinking}
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)

    def prompt_tokens(self, prompt: str) -> int:
        with self.lock:
            return len(self.tokenizer(self.chat(prompt), add_special_tokens=False)["input_ids"])

    def generate(self, requests: Sequence[Request]) -> List[str]:
        import torch
        from transformers import LogitsProcessorList

        texts = [self.chat(r.prompt) for r in requests]
        kwargs = dict(self.generation)
        # generate expands each prompt into num_beams * num_return_sequences rows.
        rows = max(kwargs.get("num_beams", 1), kwargs.get("num_return_sequences", 1))
        enc = self._encode(texts, shared_prefix=self.reuse_prefix and rows == 1)
        cap = AnswerCap([answer_cap(r.answer_budget) for r in requests], self.tokenizer)
        if self._plain_greedy():
            return self._greedy(requests, enc, cap)
        if "past_key_values" in enc:
            kwargs["past_key_values"] = enc.pop("past_key_values")
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        if rows == 1 and any(c is not None for c in cap.caps):
            cap.prompt_length = enc["input_ids"].shape[1]
            kwargs["stopping_criteria"] = [cap]
        processors = LogitsProcessorList([OverflowCheck(self.name_or_path, self.model.dtype)])
        if self.constrained:
            processors.append(self.constraint.processor(requests, rows_per_request=rows))
        # Last, so it sees what the grammar left; beams reorder rows, so only without them.
        recorder = TokenLogprobRecorder() if rows == 1 else None
        if recorder is not None:
            processors.append(recorder)
        kwargs["logits_processor"] = processors
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        self._count(enc["attention_mask"], new_tokens)
        if recorder is None:
            return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        logprobs = recorder.finish(out)
        stop = self._stop_ids()
        return [scored_answer(self.tokenizer, ids, lps, stop) for ids, lps in zip(new_tokens.tolist(), logprobs)]

    # generate settings the greedy loop honours; anything else goes to `generate`.
    GREEDY_SETTINGS = {"do_sample", "max_new_tokens", "pad_token_id"}
    # The model's own generation defaults that would add a logits processor.
    _PROCESSOR_DEFAULTS = {
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "min_length": 0,
        "min_new_tokens": None,
        "bad_words_ids": None,
        "suppress_tokens": None,
        "begin_suppress_tokens": None,
        "forced_bos_token_id": None,
        "forced_eos_token_id": None,
        "sequence_bias": None,
        "encoder_repetition_penalty": 1.0,
    }

    def _plain_greedy(self) -> bool:
        """Whether this is plain greedy decoding (the default), which the loop
        of `_greedy` does without holding finished answers in the batch."""
        settings = self.generation
        if set(settings) - self.GREEDY_SETTINGS or settings.get("do_sample") or not settings.get("max_new_tokens"):
            return False
        config = getattr(self.model, "generation_config", None)
        return all(getattr(config, k, v) in (v, None) for k, v in self._PROCESSOR_DEFAULTS.items())

    def _greedy(self, requests: Sequence[Request], enc: Dict[str, Any], cap: AnswerCap) -> List[str]:
        """Greedy decoding under the grammar (when constrained), as `generate`
        does it, but a finished answer leaves the batch: its rows are dropped
        from the key-value cache, so the batch costs what its answers cost, not
        len(batch) times its longest one. Returns scored answers.

        With `draft_tokens`, each step also feeds a guess of the tokens that
        follow (prompt lookup: what followed the last few tokens where they
        occurred before, in the prompt or the answer: entities are copied from
        the text, keys and layout from the prompt's example), checks every
        guess against the greedy choice at its position in the same forward
        pass and keeps the agreeing ones. The answers are the greedy ones; a
        step costs more compute, so the guesses are spread over the active
        rows: long when few answers are left (a lone row reads all the weights
        for one token), short or none in a full batch."""
        import torch

        model, device = self.model, self.model.device
        ids, mask, cache = enc["input_ids"], enc["attention_mask"], enc.get("past_key_values")
        # Positions from the mask, as generate computes them (padding may sit
        # between a shared prefix and the rest).
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        done_before = cache.get_seq_length() if cache is not None else 0
        matchers: List[Any] = []
        if self.constrained:
            import xgrammar

            constraint = self.constraint
            compiled = [constraint.compiler.compile_grammar(constraint.grammar(r)) for r in requests]
            matchers = [xgrammar.GrammarMatcher(c) for c in compiled]
        stop = self._stop_ids()
        limit = self.generation["max_new_tokens"]
        tokens: List[List[int]] = [[] for _ in requests]
        logprobs: List[List[float]] = [[] for _ in requests]
        # What each row's guesses are looked up in: its prompt, then its answer.
        contexts = [[t for t, m in zip(row, keep) if m] for row, keep in zip(ids.tolist(), mask.tolist())]
        active = list(range(len(requests)))
        # Under a grammar, the output layer is applied to the tokens it allows only.
        head = self._output_head() if matchers else None

        def forward(keep: Union[int, List[int]], **inputs: Any) -> Tuple[Any, Any]:
            """The cache, and the logits (or hidden states, with `head`) of the
            last `keep` positions, or of the positions listed in `keep`."""
            if head is None:
                listed = torch.tensor(keep, device=device) if isinstance(keep, list) else keep
                out = model(**inputs, use_cache=True, logits_to_keep=listed)
                cache, result = out.past_key_values, out.logits
                result = (result if isinstance(keep, list) else result[:, -keep:]).float()
            else:
                out = head[0](**inputs, use_cache=True)
                hidden = out.last_hidden_state
                cache, result = out.past_key_values, hidden[:, keep] if isinstance(keep, list) else hidden[:, -keep:]
            if not torch.isfinite(result).all():
                # (An argmax over NaN would write token 0 on and on.)
                raise overflow_error(self.name_or_path, model.dtype)
            return cache, result

        def choose(outputs: Any, bitmask: Any) -> Tuple[List[int], List[float]]:
            """The greedy (grammar-allowed) token and its log-probability at each row of `outputs`."""
            if head is not None:
                chosen, scores = self._allowed_argmax(outputs, head[1], bitmask)
            else:
                logits = outputs
                if matchers:
                    xgrammar.apply_token_bitmask_inplace(logits, bitmask.to(logits.device))
                scores = torch.log_softmax(logits, dim=-1)
                chosen = logits.argmax(-1)
                scores = scores.gather(1, chosen[:, None]).squeeze(1)
            return chosen.tolist(), scores.tolist()

        def take(r: int, t: int, score: float) -> bool:
            """Append token `t` to answer `r`; whether the answer is finished."""
            tokens[r].append(t)
            logprobs[r].append(score)
            contexts[r].append(t)
            return t in stop or len(tokens[r]) >= limit or cap.reached(r, tokens[r])

        with torch.inference_mode():
            cache, last = self._prefill(forward, ids, mask, positions, cache, done_before)
            # Masked-out guesses are harmless only in a full-attention cache (a
            # sliding window or a recurrent state would keep them).
            can_guess = full_attention(cache)
            next_position = positions[:, -1] + 1
            # The first token of each answer, chosen from the prompt pass.
            bitmask = None
            if matchers:
                bitmask = xgrammar.allocate_token_bitmask(len(active), model.config.vocab_size)
                for b, r in enumerate(active):
                    matchers[r].fill_next_token_bitmask(bitmask, b)
            chosen, scores = choose(last[:, -1], bitmask)
            pending: List[int] = []  # per active row: the token chosen but not yet fed to the model
            keep = []
            for b, r in enumerate(active):
                finished = take(r, chosen[b], scores[b])
                if not finished and matchers:
                    matchers[r].accept_token(chosen[b])
                    finished = matchers[r].is_terminated()
                if not finished:
                    keep.append(b)
                    pending.append(chosen[b])
            while keep:
                if len(keep) < len(active):
                    index = torch.tensor(keep, device=device)
                    cache.batch_select_indices(index)
                    mask, next_position = mask[index], next_position[index]
                    active = [active[b] for b in keep]
                n_draft = min(self.MAX_DRAFT, self.draft_tokens // len(active)) if can_guess else 0
                drafts = [lookup_draft(contexts[r], n_draft) if n_draft else [] for r in active]
                # A guess ends before an end token: the grammar is never ended by a guess.
                drafts = [d[: next((i for i, t in enumerate(d) if t in stop), len(d))] for d in drafts]
                # The grammar's mask at every fed position, and the guesses it
                # rejects cut off (the matcher is rolled back after the check).
                stride = 1 + max(len(d) for d in drafts)
                if matchers:
                    bitmask = xgrammar.allocate_token_bitmask(len(active) * stride, model.config.vocab_size)
                    for b, r in enumerate(active):
                        accepted = 0
                        for j in range(len(drafts[b]) + 1):
                            matchers[r].fill_next_token_bitmask(bitmask, b * stride + j)
                            if j == len(drafts[b]) or not matchers[r].accept_token(drafts[b][j]):
                                break
                            accepted += 1
                            if matchers[r].is_terminated():  # (an end token of the grammar's own)
                                break
                        drafts[b] = drafts[b][:accepted]
                width = 1 + max(len(d) for d in drafts)
                feed = [[p] + d + [p] * (width - 1 - len(d)) for p, d in zip(pending, drafts)]
                fed = torch.tensor([[1] * (1 + len(d)) + [0] * (width - 1 - len(d)) for d in drafts], device=device)
                mask = torch.cat([mask, fed.to(mask.dtype)], dim=1)
                step = torch.arange(width, device=device)
                cache, outputs = forward(
                    width,
                    input_ids=torch.tensor(feed, device=device),
                    attention_mask=mask,
                    position_ids=next_position[:, None] + step,
                    past_key_values=cache,
                )
                rows = [b * width + j for b, d in enumerate(drafts) for j in range(len(d) + 1)]
                flat = outputs.reshape(-1, outputs.shape[-1])[torch.tensor(rows, device=device)]
                if matchers:
                    bitmask = bitmask[
                        torch.tensor([b * stride + j for b, d in enumerate(drafts) for j in range(len(d) + 1)])
                    ]
                chosen, scores = choose(flat, bitmask)
                keep, pending, used = [], [], []
                at = 0
                for b, (r, d) in enumerate(zip(active, drafts)):
                    # Guess j is right when the greedy choice after the tokens before it is guess j.
                    agree = 0
                    while agree < len(d) and chosen[at + agree] == d[agree]:
                        agree += 1
                    if matchers and len(d) > agree:
                        matchers[r].rollback(len(d) - agree)
                    finished = False
                    for j in range(agree):
                        finished = take(r, d[j], scores[at + j])
                        if finished:
                            break
                    if not finished:
                        # The greedy choice after the last kept guess: the next token.
                        t = chosen[at + agree]
                        finished = take(r, t, scores[at + agree])
                        if not finished and matchers:
                            matchers[r].accept_token(t)
                            finished = matchers[r].is_terminated()
                    self.stats["draft_tokens"] += len(d)
                    self.stats["draft_tokens_kept"] += agree
                    used.append(1 + agree)
                    at += len(d) + 1
                    if not finished:
                        keep.append(b)
                        pending.append(t)
                # The guesses not kept stay in the cache, masked out; columns no row uses are cut.
                fed = torch.tensor([[1] * u + [0] * (width - u) for u in used], device=device)
                mask[:, -width:] = fed.to(mask.dtype)
                unused = width - max((used[b] for b in keep), default=width)
                if unused and keep:
                    cache.crop(-unused)
                    mask = mask[:, :-unused]
                next_position = next_position + torch.tensor(used, device=device)
        self._record(enc["attention_mask"], sum(len(t) for t in tokens))
        return [scored_answer(self.tokenizer, t, lp, stop) for t, lp in zip(tokens, logprobs)]

    # The longest guess fed for one answer in one step.
    MAX_DRAFT = 8
    # What a pass of its own costs, in prompt tokens (measured on a CPU: about 90 ms a pass,
    # 8 ms a token, for the 0.5B model).
    PASS_COST = 12
    # The most prompt tokens laid end to end in one pass: enough rows for the CPU's matrix
    # kernels to run at full speed, few enough that the attention over them (whose masked-out
    # part is computed too) stays small beside the linear layers.
    PACK_TOKENS = 512

    def _prefill(
        self, forward: Callable[..., Tuple[Any, Any]], ids: Any, mask: Any, positions: Any, cache: Any, done: int
    ) -> Tuple[Any, Any]:
        """The prompts' pass after the `done` tokens already in `cache`: the
        cache, and each prompt's last output. One batched pass computes the
        padding too. On a CPU, when the padding costs more than a pass of its
        own would, the prompts' own tokens are laid end to end in one row
        instead (packs of at most PACK_TOKENS), each attending to the shared
        tokens and to itself only (a 4D mask), and the row's cache is cut back
        into one row per prompt, the padding as zeros (masked, as before)."""
        import torch
        from transformers.cache_utils import DynamicCache

        lengths = mask[:, done:].sum(-1).tolist()
        rows, width = len(lengths), ids.shape[1] - done
        padding = rows * width - sum(lengths)

        def padded() -> Tuple[Any, Any]:
            self.stats["prompt_passes"] += 1
            return forward(
                1, input_ids=ids[:, done:], attention_mask=mask, position_ids=positions[:, done:], past_key_values=cache
            )

        model = self.model
        if (
            model.device.type != "cpu"
            or rows == 1
            or padding <= self.PASS_COST * rows
            # Models and attention known to take a boolean 4D mask as it is.
            or model.config.model_type not in self.PLAIN_HEAD_TYPES
            or model.config._attn_implementation not in ("sdpa", GQA_ATTENTION)
            # A sliding window or a recurrent state: caches cannot be cut into rows.
            or not full_attention(cache if cache is not None else DynamicCache(config=model.config))
        ):
            return padded()
        packs: List[List[int]] = [[]]
        for b, n in enumerate(lengths):
            if packs[-1] and sum(lengths[r] for r in packs[-1]) + n > self.PACK_TOKENS:
                packs.append([])
            packs[-1].append(b)
        # The shared tokens' cache (every row holds the same).
        shared = [] if cache is None else [(layer.keys[:1], layer.values[:1]) for layer in cache.layers]
        merged: List[Tuple[Any, Any]] = []
        lasts: List[Any] = [None] * rows
        self.stats["prompt_passes"] += len(packs)
        for pack in packs:
            starts = [sum(lengths[r] for r in pack[:j]) for j in range(len(pack))]
            total = starts[-1] + lengths[pack[-1]]
            attend = torch.zeros((1, 1, total, done + total), dtype=torch.bool, device=model.device)
            attend[..., :done] = True
            for b, start in zip(pack, starts):
                n = lengths[b]
                attend[0, 0, start : start + n, done + start : done + start + n] = torch.ones(
                    (n, n), dtype=torch.bool, device=model.device
                ).tril()
            row_cache, out = forward(
                [start + lengths[b] - 1 for b, start in zip(pack, starts)],
                input_ids=torch.cat([ids[b, -lengths[b] :] for b in pack])[None],
                attention_mask=attend,
                position_ids=torch.cat([positions[b, -lengths[b] :] for b in pack])[None],
                past_key_values=DynamicCache(ddp_cache_data=shared) if shared else None,
            )
            if not merged:
                for layer in row_cache.layers:
                    shape = (rows, layer.keys.shape[1], done + width, layer.keys.shape[3])
                    keys, values = layer.keys.new_zeros(shape), layer.values.new_zeros(shape)
                    keys[:, :, :done], values[:, :, :done] = layer.keys[:, :, :done], layer.values[:, :, :done]
                    merged.append((keys, values))
            for j, (b, start) in enumerate(zip(pack, starts)):
                n = lengths[b]
                for (keys, values), layer in zip(merged, row_cache.layers):
                    keys[b, :, done + width - n :] = layer.keys[0, :, done + start : done + start + n]
                    values[b, :, done + width - n :] = layer.values[0, :, done + start : done + start + n]
                lasts[b] = out[:, j : j + 1]
        self.stats["padding_tokens_skipped"] += padding
        return DynamicCache(ddp_cache_data=merged), torch.cat(lasts)

    # Architectures whose logits are exactly `lm_head(model(...).last_hidden_state)`.
    PLAIN_HEAD_TYPES = ("qwen2", "qwen3", "llama")
    # Apply the output layer to the allowed tokens only when they are at most this share of the vocabulary.
    SPARSE_HEAD_SHARE = 0.25

    def _output_head(self) -> Optional[Tuple[Any, Any]]:
        """(the model without its output layer, the output layer's weight), for
        architectures whose logits are a plain linear map of the last hidden
        state; None for others (soft-capped or scaled logits, a bias)."""
        import torch

        model = self.model
        head = model.get_output_embeddings()
        base = getattr(model, "model", None)
        if model.config.model_type not in self.PLAIN_HEAD_TYPES or base is None:
            return None
        if not isinstance(head, torch.nn.Linear) or head.bias is not None:
            return None
        return base, head.weight

    def _allowed_argmax(self, hidden: Any, weight: Any, bitmask: Any) -> Tuple[Any, Any]:
        """The grammar's greedy choice per row and its log-probability under the
        masked distribution, from the last hidden states. When the allowed
        tokens of the batch are few (inside an entity string, between JSON
        tokens), the output layer is applied to them alone: at 152k tokens it
        is a quarter of a decode step. The same choice and scores as masking
        the full logits, up to the rounding of a smaller matrix product."""
        import torch

        vocab = weight.shape[0]
        bits = torch.arange(32, dtype=torch.int32, device=bitmask.device)
        allowed = ((bitmask.unsqueeze(-1) >> bits) & 1).bool().reshape(bitmask.shape[0], -1)[:, :vocab]
        allowed = allowed.to(hidden.device)
        union = allowed.any(0).nonzero().squeeze(1)
        if len(union) <= self.SPARSE_HEAD_SHARE * vocab:
            self.stats["sparse_head_steps"] += 1
            logits = torch.nn.functional.linear(hidden, weight[union]).float()
            logits.masked_fill_(~allowed[:, union], float("-inf"))
            best = logits.argmax(-1)
            scores = torch.log_softmax(logits, dim=-1).gather(1, best[:, None]).squeeze(1)
            return union[best], scores
        logits = torch.nn.functional.linear(hidden, weight).float()
        logits.masked_fill_(~allowed, float("-inf"))
        best = logits.argmax(-1)
        return best, torch.log_softmax(logits, dim=-1).gather(1, best[:, None]).squeeze(1)

    def _encode(self, texts: List[str], shared_prefix: bool) -> Dict[str, Any]:
        """The batch's input ids and attention mask, left-padded; with
        `shared_prefix`, the tokens every prompt starts with come first, then
        the padding, then each prompt's own rest, and `past_key_values` holds
        the shared tokens' cache (computed once, and kept for the next batch
        that starts the same way: prompts differ only in their text at the end)."""
        import torch

        # The template already holds the special tokens.
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        prefix = self._shared_prefix(ids) if shared_prefix else []
        pad = self.tokenizer.pad_token_id
        width = max(len(row) for row in ids) - len(prefix)
        input_ids, mask = [], []
        for row in ids:
            rest = row[len(prefix) :]
            fill = width - len(rest)
            # Padding between the shared part and the rest: positions come from
            # the attention mask, so each prompt is positioned as if alone.
            input_ids.append(prefix + [pad] * fill + rest)
            mask.append([1] * len(prefix) + [0] * fill + [1] * len(rest))
        device = self.model.device
        enc: Dict[str, Any] = {
            "input_ids": torch.tensor(input_ids, device=device),
            "attention_mask": torch.tensor(mask, device=device),
        }
        if prefix:
            cache = copy.deepcopy(self._prefix[1])
            cache.batch_repeat_interleave(len(ids))
            enc["past_key_values"] = cache
            self.stats["prefix_tokens_reused"] += len(prefix) * len(ids)
        return enc

    def _shared_prefix(self, ids: List[List[int]]) -> List[int]:
        """The tokens all prompts start with (at least MIN_SHARED_PREFIX, and
        short of every prompt's end), their cache built or reused; [] if none."""
        import torch

        if self._prefix is not None:
            known = list(self._prefix[0])
            if all(len(row) > len(known) and row[: len(known)] == known for row in ids):
                return known
        shortest = min(len(row) for row in ids) - 1
        n = 0
        while n < shortest and all(row[n] == ids[0][n] for row in ids):
            n += 1
        if n < self.MIN_SHARED_PREFIX:
            return []
        prefix = ids[0][:n]
        with torch.inference_mode():
            # (Only the cache is used: logits for one position, not for all.)
            out = self.model(
                input_ids=torch.tensor([prefix], device=self.model.device), use_cache=True, logits_to_keep=1
            )
        self._prefix = (tuple(prefix), out.past_key_values)
        return prefix

    def _think_mode(self) -> str:
        """How the answer may start: with thinking off the template has closed
        the think block; some templates open it in the prompt."""
        if self.thinking is False:
            return "off"
        return "opened" if self.chat("").rstrip().endswith("<think>") else "optional"

    @property
    def constraint(self) -> Any:
        """The grammar builder for this model's tokenizer (built on first use,
        and again in each worker process: compiled grammars are not pickled)."""
        if self._constraint is None:
            from .constraints import EntityConstraint

            self._constraint = EntityConstraint(
                self.tokenizer,
                vocab_size=self.model.config.vocab_size,
                max_entity_words=self.max_entity_words,
                thinking=self._think_mode(),
            )
        return self._constraint


@registry.misc("spacy_recot.HFCausal.v1")
def make_hf_causal(
    name_or_path: str,
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: str = "auto",
    max_input_tokens: int = 4096,
    thinking: Optional[bool] = None,
    system_prompt: Optional[str] = None,
    constrained: bool = False,
    max_entity_words: int = 12,
    generation: Dict[str, Any] = {"max_new_tokens": 1024, "do_sample": False},
) -> HFCausalBackend:
    """A causal chat model in Hugging Face format (superseded by v2: here a given
    `generation` block replaces the defaults, max_new_tokens included)."""
    _warn_v1_generation("spacy_recot.HFCausal.v1", generation)
    return HFCausalBackend(
        name_or_path,
        gguf_file=gguf_file,
        revision=revision,
        device=device,
        dtype=dtype,
        max_input_tokens=max_input_tokens,
        thinking=thinking,
        system_prompt=system_prompt,
        constrained=constrained,
        max_entity_words=max_entity_words,
        generation=generation,
    )


@registry.misc("spacy_recot.HFCausal.v2")
def make_hf_causal_v2(
    name_or_path: str,
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: str = "auto",
    max_input_tokens: int = 4096,
    max_new_tokens: int = 1024,
    thinking: Optional[bool] = None,
    system_prompt: Optional[str] = None,
    constrained: bool = False,
    max_entity_words: int = 12,
    reuse_prefix: bool = True,
    draft_tokens: int = DEFAULT_DRAFT_TOKENS,
    generation: Dict[str, Any] = {},
) -> HFCausalBackend:
    """A causal chat model in Hugging Face format (a local folder or a hub id), or
    a GGUF file in such a folder.

    name_or_path (str): A folder written by `save_pretrained` (or holding the GGUF
        file) or a hub id such as "Qwen/Qwen3-1.7B".
    gguf_file (Optional[str]): The GGUF file's name inside `name_or_path`.
    max_input_tokens (int): The largest prompt, chat template included; longer
        docs are split.
    max_new_tokens (int): The longest answer (reasoning included); docs are
        split so that their entity list fits.
    thinking (Optional[bool]): `enable_thinking` for the chat template (Qwen3);
        None leaves the template's default.
    system_prompt (Optional[str]): A system turn before the prompt; None keeps
        the template's default.
    constrained (bool): Generate the JSON under a grammar: only offered labels,
        well-formed JSON, every entity an exact substring of the text. A
        `<think>...</think>` block before it stays free.
    max_entity_words (int): With `constrained`, the longest entity in words.
    reuse_prefix (bool): Compute the tokens every prompt of a batch starts with
        (the instruction and labels) once, and reuse their key-value cache
        for every prompt and the following batches.
    draft_tokens (int): Under greedy decoding, guessed tokens checked per step
        (prompt lookup), shared among the answers still being written: the
        same answers in fewer steps. 0 turns it off.
    generation (Dict[str, Any]): Keyword arguments for `model.generate`, merged
        over the defaults (greedy: do_sample false).
    device, dtype: As for `spacy_recot.HFSeq2Seq.v2`.
    """
    return HFCausalBackend(
        name_or_path,
        gguf_file=gguf_file,
        revision=revision,
        device=device,
        dtype=dtype,
        max_input_tokens=max_input_tokens,
        thinking=thinking,
        system_prompt=system_prompt,
        constrained=constrained,
        max_entity_words=max_entity_words,
        reuse_prefix=reuse_prefix,
        draft_tokens=draft_tokens,
        generation=merge_generation({"do_sample": False}, generation, max_new_tokens),
    )


@registry.misc("spacy_recot.HFCausal.v3")
def make_hf_causal_v3(
    name_or_path: str,
    adapter: Optional[str] = None,
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: str = "auto",
    max_input_tokens: int = 4096,
    max_new_tokens: int = 1024,
    thinking: Optional[bool] = None,
    system_prompt: Optional[str] = None,
    constrained: bool = False,
    max_entity_words: int = 12,
    reuse_prefix: bool = True,
    draft_tokens: int = DEFAULT_DRAFT_TOKENS,
    generation: Dict[str, Any] = {},
) -> HFCausalBackend:
    """`spacy_recot.HFCausal.v2` with an optional LoRA adapter (a peft adapter
    folder, or the name of one shipped with spacy-recot) merged into the
    weights at load: as fast as the merged model, a few MB on disk."""
    return HFCausalBackend(
        name_or_path,
        adapter=adapter,
        gguf_file=gguf_file,
        revision=revision,
        device=device,
        dtype=dtype,
        max_input_tokens=max_input_tokens,
        thinking=thinking,
        system_prompt=system_prompt,
        constrained=constrained,
        max_entity_words=max_entity_words,
        reuse_prefix=reuse_prefix,
        draft_tokens=draft_tokens,
        generation=merge_generation({"do_sample": False}, generation, max_new_tokens),
    )
