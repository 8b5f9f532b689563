"""Moved to `spacy_recot.testing.tiny`; this name stays so that older imports work."""

from .testing.tiny import (  # noqa: F401
    CHATML_THINKING_TEMPLATE,
    tiny_qwen3,
    tiny_t5,
    train_bpe_tokenizer,
    train_t5_tokenizer,
)
