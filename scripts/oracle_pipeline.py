"""Write a pipeline whose recot_ner component answers with the gold annotation.

    python scripts/oracle_pipeline.py corpus/gner/crossner_ai/test.spacy pipelines/oracle_ai

Labels come from the converted file's `.labels.json`. Evaluate the result with
`python -m spacy evaluate`: with no noise, the entity F is 100.00.
"""

import json
from pathlib import Path

import spacy
import typer

from spacy_recot.conll import read_labels


def main(
    gold: Path = typer.Argument(..., help="A converted .spacy file."),
    output_dir: Path = typer.Argument(..., help="Where to write the pipeline."),
    output_format: str = typer.Option("bio", "--format", help="bio or entities"),
    noise: str = typer.Option("{}", "--noise", help='JSON, e.g. {"drop_word": 0.5}'),
) -> None:
    prompt = "spacy_recot.GNERPrompt.v1" if output_format == "bio" else "spacy_recot.EntityListPrompt.v1"
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "recot_ner",
        config={
            "labels": read_labels(gold),
            "prompt": {"@misc": prompt},
            "model": {
                "@misc": "spacy_recot.Oracle.v1",
                "gold": str(gold),
                "output_format": output_format,
                "noise": json.loads(noise),
            },
        },
    )
    nlp.to_disk(output_dir)
    typer.echo(f"Wrote {output_dir}")


if __name__ == "__main__":
    typer.run(main)
