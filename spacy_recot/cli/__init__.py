"""Command line: `python -m spacy_recot <command>`."""

from . import data, pipelines, tiny  # noqa: F401  (each adds its commands to the app)
from .app import app
from .data import load_backend
from .tiny import tiny_qwen3_command, tiny_t5_command

__all__ = ["app", "load_backend", "main", "tiny_qwen3_command", "tiny_t5_command"]


def main() -> None:
    app()
