"""Tiny T5 models built from a config, with a tokenizer trained on the spot.

No pretrained weights can be downloaded on machines without a model hub, so
tests, benchmarks and the CPU smoke run of the training workflow use these:
a real sentencepiece unigram tokenizer with T5's special ids, and a real
`T5ForConditionalGeneration` of a few hundred thousand parameters.
"""
import io
from typing import Any, Iterable


def train_t5_tokenizer(lines: Iterable[str], vocab_size: int = 600) -> Any:
    """A `T5Tokenizer` whose sentencepiece unigram model is trained on `lines`."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(lines)),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tiny_t5(tokenizer: Any, seed: int = 0, d_model: int = 64, layers: int = 2) -> Any:
    """A randomly initialised T5 sized for a CPU, matching `tokenizer`."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_ff=2 * d_model,
        d_kv=d_model // 4,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=4,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return T5ForConditionalGeneration(config)
