"""The base model of a training run, in one folder the train command reads.

    python scripts/base_model.py BASE_MODEL DATA OUTPUT_DIR

With BASE_MODEL = "tiny", builds a tiny T5 from a config with a sentencepiece
tokenizer trained on DATA (the CPU smoke configuration); otherwise saves the
checkpoint BASE_MODEL (a folder or a hub id, e.g. google/flan-t5-base) there.
Writes OUTPUT_DIR/model and OUTPUT_DIR/source.txt (what it was made from).
"""
import subprocess
import sys
from pathlib import Path

import typer


def main(base_model: str, data: Path, output_dir: Path) -> None:
    target = output_dir / "model"
    if base_model == "tiny":
        subprocess.run(
            [sys.executable, "-m", "spacy_recot", "tiny-t5", str(target), str(data), "--vocab-size", "800"], check=True
        )
    else:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        from spacy_recot.backends import load_pretrained

        load_pretrained(AutoTokenizer, base_model).save_pretrained(target)
        load_pretrained(AutoModelForSeq2SeqLM, base_model).save_pretrained(target)
    (output_dir / "source.txt").write_text(base_model + "\n", encoding="utf-8")
    typer.echo(f"Base model {base_model} -> {target}")


if __name__ == "__main__":
    typer.run(main)
