"""Model backends: prompts in, answers (with token log-probabilities) out.

- `base`: what the component needs of a backend (lazy load, a lock, pickling
  for worker processes, bytes, the cache identity);
- `devices`: device and precision, from the CPU's features;
- `hf`: Hugging Face models in process (loading that runs no code from a
  pipeline folder, the `generate` settings a config may give, a LoRA adapter
  merged at load); `seq2seq` (T5) and `causal` (chat models) on top of it;
- `packaged`: real models that ship in pip packages, offline;
- `server`: an OpenAI-compatible server (vLLM, SGLang, a hosted API);
  `vllm`: a local vLLM server for tests and benchmarks;
- `registry`: the registered functions (`spacy_recot.HFCausal.v2`, ...).

The decoding engine the in-process causal backend runs is `spacy_recot.generation`.
"""

from ..errors import ModelLoadError
from .base import Backend
from .causal import DEFAULT_DRAFT_TOKENS, CausalSettings, HFCausalBackend
from .devices import DTYPES, check_dtype, cpu_has_bf16, cpu_has_fp16, resolve_device, resolve_dtype
from .hf import HF_REQUIREMENTS, HFBackend, HFSettings, check_generation, merge_generation
from .loading import TRUST_REMOTE_CODE_ENV, load_pretrained, save_dequantized, trusts_remote_code
from .packaged import (
    DEFAULT_PACKAGED,
    FAST_PACKAGED,
    PACKAGED_MODELS,
    PackagedCausalBackend,
    cache_dir,
    get_packaged_model,
    materialize,
)
from .registry import (
    make_hf_causal,
    make_hf_causal_v2,
    make_hf_causal_v3,
    make_hf_seq2seq,
    make_hf_seq2seq_v2,
    make_hf_seq2seq_v3,
    make_openai_compatible,
    make_packaged_causal,
    make_packaged_causal_v2,
    make_packaged_causal_v3,
    make_packaged_causal_v4,
)
from .seq2seq import HFSeq2SeqBackend, Seq2SeqSettings
from .server import OpenAICompatibleBackend, ServerError, ServerSettings

__all__ = [
    "DEFAULT_DRAFT_TOKENS",
    "DEFAULT_PACKAGED",
    "DTYPES",
    "FAST_PACKAGED",
    "HF_REQUIREMENTS",
    "PACKAGED_MODELS",
    "TRUST_REMOTE_CODE_ENV",
    "Backend",
    "CausalSettings",
    "HFBackend",
    "HFCausalBackend",
    "HFSeq2SeqBackend",
    "HFSettings",
    "ModelLoadError",
    "OpenAICompatibleBackend",
    "PackagedCausalBackend",
    "Seq2SeqSettings",
    "ServerError",
    "ServerSettings",
    "cache_dir",
    "check_dtype",
    "check_generation",
    "cpu_has_bf16",
    "cpu_has_fp16",
    "get_packaged_model",
    "load_pretrained",
    "make_hf_causal",
    "make_hf_causal_v2",
    "make_hf_causal_v3",
    "make_hf_seq2seq",
    "make_hf_seq2seq_v2",
    "make_hf_seq2seq_v3",
    "make_openai_compatible",
    "make_packaged_causal",
    "make_packaged_causal_v2",
    "make_packaged_causal_v3",
    "make_packaged_causal_v4",
    "materialize",
    "merge_generation",
    "resolve_device",
    "resolve_dtype",
    "save_dequantized",
    "trusts_remote_code",
]
