"""Every bad user input we tried, and the message it gets (run for real).

    python scripts/bad_inputs.py docs/bad_inputs.md

Writes a markdown table; tests/test_bad_inputs.py runs the same cases and checks
that each fails early with a message naming the key, file or line.
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, List, Tuple

import spacy
import typer

# (what was tried, how it is tried, a string the message must hold)
Case = Tuple[str, Callable[[Path], None], str]


def _pipe(config: dict) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        spacy.blank("en").add_pipe("recot_ner", config=config)

    return run


def _run(config: dict, text: str = "Barack Obama visited Paris.") -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        nlp = spacy.blank("en")
        nlp.add_pipe("recot_ner", config=config)
        nlp(text)

    return run


def _convert(content: bytes) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        from spacy_recot.conll import convert

        path = tmp / "bad.txt"
        path.write_bytes(content)
        convert(path, tmp / "out.spacy")

    return run


def _cli(*args: str) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "spacy_recot", *[a.replace("TMP", str(tmp)) for a in args]],
            capture_output=True,
            text=True,
            env={"COLUMNS": "200", **__import__("os").environ},
        )
        if done.returncode != 0:
            lines = [line.strip(" │╭╰─") for line in (done.stderr or done.stdout).splitlines()]
            raise SystemExit(" ".join(line for line in lines if line and not line.startswith(("Usage", "Try"))))

    return run


def _missing_pipeline(tmp: Path) -> None:
    _convert(b"Barack\tB-person\nObama\tI-person\n")(tmp)
    _cli("evaluate", "TMP/no_pipeline", "TMP/out.spacy")(tmp)


def cases() -> List[Case]:
    seq2seq = {"@misc": "spacy_recot.HFSeq2Seq.v2", "name_or_path": "x"}
    return [
        ("labels empty, then the pipeline run", _run({"labels": [], "model": seq2seq}), "labels is empty"),
        ("labels a string, not a list", _pipe({"labels": "person"}), "labels"),
        ("a label empty", _pipe({"labels": ["person", " "]}), "empty or non-string labels"),
        ("a label twice", _pipe({"labels": ["person", "person"]}), "more than once"),
        ("two labels equal up to case", _pipe({"labels": ["PER", "per"]}), "differ only in case"),
        ("a label with a parenthesis, BIO output", _pipe({"labels": ["unit (SI)"], "model": seq2seq}), "cannot carry"),
        (
            "add_label with a non-string",
            lambda tmp: spacy.blank("en").add_pipe("recot_ner").add_label(3),
            "must be a string",
        ),
        (
            "a description for a label not offered",
            _pipe({"labels": ["a"], "label_descriptions": {"b": "x"}}),
            "label_descriptions",
        ),
        (
            "a BIO prompt with a backend that writes JSON only",
            _pipe({"labels": ["a"], "prompt": {"@misc": "spacy_recot.GNERPrompt.v1"}}),
            "asks for 'bio' output",
        ),
        (
            "a JSON prompt with a T5 backend",
            _pipe({"labels": ["a"], "model": seq2seq, "prompt": {"@misc": "spacy_recot.ZeroShotJSONPrompt.v1"}}),
            "writes only 'bio'",
        ),
        ("batch_size 0", _pipe({"labels": ["a"], "batch_size": 0}), "batch_size"),
        ("alignment_mode unknown", _pipe({"labels": ["a"], "alignment_mode": "loose"}), "alignment_mode"),
        (
            "max_new_tokens inside generation (v2)",
            _pipe({"labels": ["a"], "model": {**seq2seq, "generation": {"max_new_tokens": 9}}}),
            "model.max_new_tokens",
        ),
        ("max_new_tokens 0", _pipe({"labels": ["a"], "model": {**seq2seq, "max_new_tokens": 0}}), "max_new_tokens"),
        (
            "a model folder that does not exist",
            _run({"labels": ["a"], "model": {**seq2seq, "name_or_path": "./no/such/model"}}),
            "No model folder at './no/such/model' (model.name_or_path)",
        ),
        (
            "a hub id, no network",
            _run({"labels": ["a"], "model": {**seq2seq, "name_or_path": "no-such-org/no-such-model"}}),
            "could not provide it",
        ),
        (
            "a dtype torch does not have",
            _pipe({"labels": ["a"], "model": {**seq2seq, "dtype": "float7"}}),
            "model.dtype",
        ),
        (
            "an unknown packaged model",
            _pipe({"labels": ["a"], "model": {"@misc": "spacy_recot.PackagedCausal.v2", "name": "gpt-5"}}),
            "model.name",
        ),
        (
            "an unknown oracle noise mode",
            _pipe(
                {"labels": ["a"], "model": {"@misc": "spacy_recot.Oracle.v1", "gold": "g.spacy", "noise": {"typo": 1}}}
            ),
            "model.noise",
        ),
        ("a CoNLL line with one column", _convert(b"Barack\tB-person\nObama\n"), "bad.txt:2"),
        ("a CoNLL tag that is not BIO", _convert(b"Barack\tPERSON\n"), "bad.txt:1"),
        ("a CoNLL file that is not UTF-8", _convert(b"Caf\xe9\tO\n"), "not UTF-8"),
        (
            "evaluate: unknown --tokenization",
            _cli("evaluate", "x", "y.spacy", "--tokenization", "words"),
            "--tokenization",
        ),
        ("evaluate: a data file that does not exist", _cli("evaluate", "TMP", "TMP/none.spacy"), "none.spacy"),
        ("evaluate: a pipeline that does not exist", _missing_pipeline, "no_pipeline"),
    ]


def run_case(case: Case, tmp: Path) -> str:
    """The error message the case gets, or "" when it did not fail."""
    _, fn, _ = case
    try:
        fn(tmp)
    except BaseException as err:  # noqa: BLE001 - we record whatever it raises
        return f"{type(err).__name__}: {err}".replace("\n", " ")
    return ""


def main(output: Path = typer.Argument(..., help="The markdown file to write.")) -> None:
    import spacy_recot  # noqa: F401

    rows = ["| bad input | what happens |", "|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases():
            # Stable text: the temporary folder and object addresses differ from run to run.
            message = re.sub(r" at 0x[0-9a-f]+", "", run_case(case, Path(tmp)).replace(tmp, "TMP"))
            rows.append(f"| {case[0]} | `{message[:400].replace('|', '/')}` |")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        "# Bad input and the message it gets\n\nEach row was run for real by `python scripts/bad_inputs.py "
        "docs/bad_inputs.md` (and by `tests/test_bad_inputs.py`).\n\n" + "\n".join(rows) + "\n",
        encoding="utf-8",
    )
    typer.echo(f"Wrote {output}")


if __name__ == "__main__":
    typer.run(main)
