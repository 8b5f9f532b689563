"""The base model of a training run, in one folder the train command reads.

    python scripts/base_model.py BASE_MODEL DATA OUTPUT_DIR [--kind seq2seq|causal]

With BASE_MODEL = "tiny", builds a tiny T5 (seq2seq) or Qwen3 (causal) from a
config with a tokenizer trained on DATA (the CPU smoke configurations);
otherwise saves the checkpoint BASE_MODEL (a folder or a hub id, e.g.
google/flan-t5-base, Qwen/Qwen3-1.7B-Base) there.
Writes OUTPUT_DIR/model and OUTPUT_DIR/source.txt (what it was made from).
"""

from pathlib import Path

import typer


def main(base_model: str, data: Path, output_dir: Path, vocab_size: int = 800, kind: str = "seq2seq") -> None:
    """Write OUTPUT_DIR/model from BASE_MODEL ("tiny" or a checkpoint) and record the source."""
    if kind not in ("seq2seq", "causal"):
        raise typer.BadParameter(f"--kind must be seq2seq or causal, not {kind!r}")
    target = output_dir / "model"
    if base_model == "tiny" and kind == "seq2seq":
        from spacy_recot.cli import tiny_t5_command

        tiny_t5_command(target, [data], vocab_size=vocab_size, d_model=64, layers=2, seed=0)
    elif base_model == "tiny":
        from spacy_recot.cli import tiny_qwen3_command

        tiny_qwen3_command(target, [data], vocab_size=vocab_size, hidden=64, layers=2, seed=0)
    else:
        import transformers

        from spacy_recot.backends import load_pretrained

        auto = transformers.AutoModelForSeq2SeqLM if kind == "seq2seq" else transformers.AutoModelForCausalLM
        load_pretrained(transformers.AutoTokenizer, base_model).save_pretrained(target)
        load_pretrained(auto, base_model).save_pretrained(target)
    (output_dir / "source.txt").write_text(base_model + "\n", encoding="utf-8")
    typer.echo(f"Base model {base_model} -> {target}")


if __name__ == "__main__":
    typer.run(main)
