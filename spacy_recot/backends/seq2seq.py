"""A Hugging Face encoder-decoder model (T5, Flan-T5, GNER-T5) in process.

T5's vocabulary cannot write "{" or "}", so it writes BIO output only; with
`decoding = "forced"` (the default of HFSeq2Seq.v3) the words of the answer are
forced and only the tags are decided (`generation.bio_forced`).
"""

from dataclasses import dataclass
from typing import Any, ClassVar, List, Literal, Sequence, Tuple

from ..chunks import Request
from ..tasks.base import BIO
from .hf import HFBackend, HFSettings

Decoding = Literal["free", "constrained", "forced"]
DECODINGS: Tuple[str, ...] = ("free", "constrained", "forced")


@dataclass(frozen=True)
class Seq2SeqSettings(HFSettings):
    """`HFSettings`, and how answers are decoded: "free" (generate as
    configured), "constrained" (token by token, only the words and valid BIO
    tags), "forced" (the same answers by parallel fixed-point iteration)."""

    IDENTITY: ClassVar[Tuple[str, ...]] = HFSettings.IDENTITY + ("decoding",)

    decoding: str = "free"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decoding not in DECODINGS:
            raise ValueError(f"Unknown decoding {self.decoding!r} (model.decoding): use one of {list(DECODINGS)}")


class HFSeq2SeqBackend(HFBackend):
    """A Hugging Face encoder-decoder model (T5, Flan-T5, GNER-T5) run with `generate`.

    T5's vocabulary cannot write "{" or "}", so it writes BIO output only.
    """

    auto_model = "AutoModelForSeq2SeqLM"
    settings_class = Seq2SeqSettings
    output_formats = (BIO,)
    half_dtype = "float32"  # T5's activations overflow float16
    # Published seq2seq NER checkpoints (GNER-T5) were trained on GNER's instruction.
    default_prompt = "spacy_recot.GNERPrompt.v1"

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
        if self.settings.decoding != "free" and not self.free_text(requests):
            return self._generate_bio(requests, enc)
        with torch.inference_mode():
            out = self.model.generate(**enc, **self.settings.generation)
        self._count(enc["attention_mask"], out[:, 1:])  # T5 starts with the pad token
        return self.tokenizer.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _generate_bio(self, requests: Sequence[Request], enc: Any) -> List[str]:
        """Answers that copy the words and choose only valid BIO tags."""
        from ..generation.bio_forced import WordChoices, answer_text, constrained_generate, forced_decode

        choices = [WordChoices.build(self.tokenizer, r.constraint.words, r.constraint.labels) for r in requests]
        if self.settings.decoding == "constrained":
            generation = {k: v for k, v in self.settings.generation.items() if k != "max_new_tokens"}
            out = constrained_generate(self.model, enc, choices, **generation)
            self._count(enc["attention_mask"], out[:, 1:])
            return self.tokenizer.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        tags, counts = forced_decode(self.model, enc, choices)
        self.stats.update(counts)
        self._record(enc["attention_mask"], sum(len(c.sequence(t)) for c, t in zip(choices, tags)))
        return [answer_text(c, t, self.tokenizer) for c, t in zip(choices, tags)]
