"""Commands that build tiny models for smoke runs and tests: `tiny-t5`, `tiny-qwen3`."""

from pathlib import Path
from typing import Any, List

import typer

from .app import app, read_all


@app.command("tiny-qwen3")
def tiny_qwen3_command(
    output_dir: Path = typer.Argument(..., help="Where to save the model and tokenizer."),
    data: List[Path] = typer.Argument(
        ..., help="NER-CoT or GRPO records (JSON lines) whose prompts and answers train the tokenizer."
    ),
    vocab_size: int = typer.Option(1000, "--vocab-size"),
    hidden: int = typer.Option(64, "--hidden"),
    layers: int = typer.Option(2, "--layers"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Build a tiny Qwen3 (random weights, a byte-level BPE tokenizer with a ChatML
    template trained on DATA): the base model of the CPU smoke run of the reasoning workflow."""
    from ..cot_data import chat_example
    from ..jsonl import load_jsonl
    from ..testing.tiny import tiny_qwen3, train_bpe_tokenizer

    lines: List[str] = []
    for record in read_all(data, load_jsonl):
        example = chat_example({**record, "cot": record.get("cot", "")})
        lines.extend(example["prompt"][0]["content"].splitlines() + example["completion"][0]["content"].splitlines())
    if not lines:
        raise typer.BadParameter("no records in DATA to train the tokenizer on")
    tokenizer = train_bpe_tokenizer(lines, vocab_size=vocab_size)
    _save_tiny("Qwen3", tiny_qwen3(tokenizer, seed=seed, hidden=hidden, layers=layers), tokenizer, output_dir)


@app.command("tiny-t5")
def tiny_t5_command(
    output_dir: Path = typer.Argument(..., help="Where to save the model and tokenizer."),
    data: List[Path] = typer.Argument(
        ..., help="Instruction data (JSON lines) whose sources and targets train the tokenizer."
    ),
    vocab_size: int = typer.Option(800, "--vocab-size"),
    d_model: int = typer.Option(64, "--d-model"),
    layers: int = typer.Option(2, "--layers"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Build a tiny T5 (random weights, a sentencepiece tokenizer trained on DATA):
    the base model of the CPU smoke run of the training workflow."""
    from ..instruction_data import read_instances
    from ..testing.tiny import tiny_t5, train_t5_tokenizer

    lines: List[str] = []
    for row in read_all(data, read_instances):
        lines.extend(row.get("source", "").splitlines() + [row.get("target", "")])
    tokenizer = train_t5_tokenizer(lines, vocab_size=vocab_size)
    _save_tiny("T5", tiny_t5(tokenizer, seed=seed, d_model=d_model, layers=layers), tokenizer, output_dir)


def _save_tiny(what: str, model: Any, tokenizer: Any, output_dir: Path) -> None:
    """Save a tiny model and its tokenizer, and say what was written."""
    from ..testing.tiny import save_model

    save_model(model, tokenizer, output_dir)
    n = sum(p.numel() for p in model.parameters())
    typer.echo(f"Wrote a tiny {what} ({n:,} parameters, vocabulary {len(tokenizer)}) to {output_dir}")
