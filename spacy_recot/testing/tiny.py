"""Tiny T5 and Qwen3 models built from a config, with tokenizers trained on the spot.

No pretrained weights can be downloaded on machines without a model hub, so
tests, benchmarks and the CPU smoke run of the training workflow use these:
a real sentencepiece unigram tokenizer with T5's special ids and a real
`T5ForConditionalGeneration`; a real byte-level BPE tokenizer with ChatML
tokens and a chat template and a real `Qwen3ForCausalLM`; each of a few
hundred thousand parameters at most.
"""

import io
from pathlib import Path
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


# Qwen3's chat template reduced to what the component uses: ChatML turns, and
# with enable_thinking=false an empty think block opened for the model.
CHATML_THINKING_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)


def train_bpe_tokenizer(lines: Iterable[str], vocab_size: int = 800) -> Any:
    """A byte-level BPE tokenizer (Qwen's kind) trained on `lines`, with ChatML
    special tokens, `<think>`/`</think>` as added tokens and a chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(lines), trainer)
    # As in Qwen3: whole tokens, but not special (decoding keeps them).
    tok.add_tokens([AddedToken("<think>", special=False), AddedToken("</think>", special=False)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHATML_THINKING_TEMPLATE,
    )


def tiny_qwen3(tokenizer: Any, seed: int = 0, hidden: int = 64, layers: int = 2) -> Any:
    """A randomly initialised Qwen3 causal LM sized for a CPU, matching `tokenizer`."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    return Qwen3ForCausalLM(config)


def save_model(model: Any, tokenizer: Any, path: Path) -> Path:
    """Save a model and its tokenizer in one folder, which `from_pretrained` (and
    the component's HF backends) load, with this package's license (the model is
    its work); the folder."""
    from ..licenses import own_license_text

    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    text = own_license_text()
    if text:
        (Path(path) / "LICENSE").write_text(text, encoding="utf-8")
    return Path(path)
