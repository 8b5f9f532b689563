"""The command line's typer app, which each command module adds its commands to, and
what the commands share."""

from pathlib import Path
from typing import Any, Callable, Dict, List

import typer

app = typer.Typer(
    name="spacy_recot",
    help="Zero-shot NER with generative models for spaCy: data conversion, instruction data and evaluation.",
    no_args_is_help=True,
    add_completion=False,
    # Docstrings are wrapped at 90 columns in the source: as Markdown, their
    # paragraphs wrap to the terminal instead of keeping those line breaks.
    rich_markup_mode="markdown",
)


def read_all(data: List[Path], read: Callable[[Path], List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """The records of every DATA file; a file that is missing or malformed is a bad DATA."""
    records: List[Dict[str, Any]] = []
    for path in data:
        if not path.is_file():
            raise typer.BadParameter(f"{path} does not exist")
        try:
            records.extend(read(path))
        except ValueError as err:  # the readers' errors name file and line
            raise typer.BadParameter(str(err)) from None
    return records
