"""A Hugging Face causal chat model in process (Qwen3, Qwen2.5, SmolLM2, ...).

Each prompt becomes the user turn of the tokenizer's chat template; prompts are
left-padded so a batch generates together; only the new tokens are decoded.
Plain greedy decoding (the default) runs the package's own loop
(`generation.greedy`); anything else goes to transformers' `generate`. With
`constrained`, the answer's JSON is generated under the grammar of the
request's constraint (`generation.grammar`), so the backend writes entity-list
output only.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

from ..chat import chat_messages
from ..chunks import Request
from ..errors import ModelLoadError
from ..generation.decoded import scored_answer
from ..generation.grammar import XGRAMMAR_REQUIREMENT, EntityGrammar, check_xgrammar
from ..generation.greedy import GreedyDecoder
from ..generation.logits_process import OverflowCheck, TokenLogprobRecorder
from ..generation.prefix_cache import SharedPrefixCache, encode_prompts
from ..generation.settings import DecodingSettings
from ..generation.stopping_criteria import AnswerCap, answer_cap
from ..tasks.base import ENTITIES
from .hf import HFBackend, HFSettings

# Guessed tokens checked per greedy step by default (shared among the answers being written).
DEFAULT_DRAFT_TOKENS = 16


@dataclass(frozen=True)
class CausalSettings(HFSettings):
    """`HFSettings`, and:

    gguf_file (Optional[str]): A GGUF file's name inside `name_or_path`.
    thinking (Optional[bool]): `enable_thinking` for the chat template (Qwen3);
        None leaves the template's default.
    system_prompt (Optional[str]): A system turn before the prompt; None keeps
        the template's default.
    constrained (bool): Generate the JSON under the request's grammar.
    max_entity_words (int): With `constrained`, the longest entity in words.
    reuse_prefix (bool): Compute the tokens every prompt of a batch starts with
        once, and reuse their cache.
    draft_tokens (int): Under greedy decoding, guessed tokens checked per step.
    decoding (DecodingSettings): The decoding engine's knobs.
    """

    # reuse_prefix, draft_tokens and the engine's knobs change how fast, not what:
    # answers cached with other values are reused.
    IDENTITY: ClassVar[Tuple[str, ...]] = HFSettings.IDENTITY + (
        "gguf_file",
        "thinking",
        "system_prompt",
        "constrained",
        "max_entity_words",
    )

    max_input_tokens: int = 4096
    gguf_file: Optional[str] = None
    thinking: Optional[bool] = None
    system_prompt: Optional[str] = None
    constrained: bool = False
    max_entity_words: int = 12
    reuse_prefix: bool = True
    draft_tokens: int = 0
    decoding: DecodingSettings = field(default_factory=DecodingSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, least, kind in (("draft_tokens", 0, "non-negative"), ("max_entity_words", 1, "positive")):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"model.{key} must be a {kind} integer, not {value!r}")


class HFCausalBackend(HFBackend):
    """A causal chat model run with the package's greedy loop or `generate`."""

    auto_model = "AutoModelForCausalLM"
    _transient = ("model", "tokenizer", "_grammar", "_prefix")

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

    settings_class = CausalSettings

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        settings = self.settings
        self._grammar: Optional[EntityGrammar] = None
        self._prefix: Optional[SharedPrefixCache] = None
        if settings.constrained:
            self.output_formats = (ENTITIES,)

    def requirements(self) -> List[str]:
        return super().requirements() + ([XGRAMMAR_REQUIREMENT] if self.settings.constrained else [])

    def _load_kwargs(self) -> Dict[str, Any]:
        kwargs = super()._load_kwargs()
        if self.settings.gguf_file:
            kwargs["gguf_file"] = self.settings.gguf_file
        return kwargs

    def _load_from(self, source: Union[str, Path], **kwargs: Any) -> None:
        if self.settings.constrained:
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
        self._grammar = self._prefix = None

    def use_model(self, model: Any, tokenizer: Any) -> None:
        super().use_model(model, tokenizer)
        # A grammar belongs to one tokenizer, a prefix cache to one model.
        self._grammar = self._prefix = None

    def release(self) -> None:
        super().release()
        self._grammar = self._prefix = None

    def chat(self, prompt: str) -> str:
        """The prompt as the user turn of the chat template, ready for the answer."""
        thinking = self.settings.thinking
        extra = {} if thinking is None else {"enable_thinking": thinking}
        messages = chat_messages(prompt, self.settings.system_prompt)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)

    def prompt_tokens(self, prompt: str) -> int:
        with self.lock:
            return len(self.tokenizer(self.chat(prompt), add_special_tokens=False)["input_ids"])

    def _think_mode(self) -> str:
        """How the answer may start: with thinking off the template has closed
        the think block; some templates open it in the prompt."""
        if self.settings.thinking is False:
            return "off"
        return "opened" if self.chat("").rstrip().endswith("<think>") else "optional"

    @property
    def grammar(self) -> EntityGrammar:
        """The grammar compiler for this model's tokenizer (built on first use,
        and again in each worker process: compiled grammars are not pickled)."""
        if self._grammar is None:
            self._grammar = EntityGrammar(
                self.tokenizer,
                vocab_size=self.model.config.vocab_size,
                max_entity_words=self.settings.max_entity_words,
                thinking=self._think_mode(),
            )
        return self._grammar

    def _plain_greedy(self) -> bool:
        """Whether this is plain greedy decoding (the default), which the
        package's loop does without holding finished answers in the batch."""
        settings = self.settings.generation
        if set(settings) - self.GREEDY_SETTINGS or settings.get("do_sample") or not settings.get("max_new_tokens"):
            return False
        config = getattr(self.model, "generation_config", None)
        return all(getattr(config, k, v) in (v, None) for k, v in self._PROCESSOR_DEFAULTS.items())

    def _encode(self, texts: List[str], shared_prefix: bool) -> Dict[str, Any]:
        if shared_prefix and self._prefix is None:
            self._prefix = SharedPrefixCache(self.settings.decoding.min_shared_prefix)
        return encode_prompts(self.model, self.tokenizer, texts, self._prefix if shared_prefix else None, self.stats)

    def generate(self, requests: Sequence[Request]) -> List[str]:
        texts = [self.chat(r.prompt) for r in requests]
        kwargs = dict(self.settings.generation)
        # generate expands each prompt into num_beams * num_return_sequences rows.
        rows = max(kwargs.get("num_beams", 1), kwargs.get("num_return_sequences", 1))
        enc = self._encode(texts, shared_prefix=self.settings.reuse_prefix and rows == 1)
        cap = AnswerCap([answer_cap(r.answer_budget) for r in requests], self.tokenizer)
        constrained = self.settings.constrained and not self.free_text(requests)
        if self._plain_greedy():
            decoder = GreedyDecoder(
                self.model,
                self.tokenizer,
                grammar=self.grammar if constrained else None,
                stop_ids=self._stop_ids(),
                max_new_tokens=kwargs["max_new_tokens"],
                draft_tokens=self.settings.draft_tokens,
                settings=self.settings.decoding,
                stats=self.stats,
                name=self.settings.name_or_path,
            )
            answers = decoder(requests, enc, cap)
            self._record(enc["attention_mask"], decoder.generated)
            return answers
        return self._generate(requests, enc, kwargs, rows, cap, constrained)

    def _generate(
        self,
        requests: Sequence[Request],
        enc: Dict[str, Any],
        kwargs: Dict[str, Any],
        rows: int,
        cap: AnswerCap,
        constrained: bool,
    ) -> List[str]:
        """Decoding with transformers' `generate` (sampling, beams, penalties)."""
        import torch
        from transformers import LogitsProcessorList

        if "past_key_values" in enc:
            kwargs["past_key_values"] = enc.pop("past_key_values")
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        if rows == 1 and any(c is not None for c in cap.caps):
            cap.prompt_length = enc["input_ids"].shape[1]
            kwargs["stopping_criteria"] = [cap]
        processors = LogitsProcessorList([OverflowCheck(self.settings.name_or_path, self.model.dtype)])
        if constrained:
            processors.append(self.grammar.processor(requests, rows_per_request=rows))
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
