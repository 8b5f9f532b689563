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
from typing import Callable, Dict, List, Tuple

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


def _model_with_its_own_code(tmp: Path) -> None:
    """A model folder whose config.json asks transformers to import its own code."""
    import json

    from spacy_recot.testing.tiny import train_bpe_tokenizer

    folder = tmp / "custom_model"
    train_bpe_tokenizer(["Barack Obama visited Paris."], vocab_size=300).save_pretrained(folder)
    auto_map = {"AutoConfig": "custom.CustomConfig", "AutoModelForCausalLM": "custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps({"model_type": "recot_custom", "auto_map": auto_map}))
    _run({"labels": ["a"], "model": {"@misc": "spacy_recot.HFCausal.v2", "name_or_path": str(folder)}})(tmp)


def _bytes_outside(tmp: Path) -> None:
    import srsly

    from spacy_recot.backends import Backend

    Backend().from_bytes(srsly.msgpack_dumps({"files": {"config.json": b"{}", "../../escaped.txt": b"x"}}))


def _with_files(run: Callable[[Path], None], files: Dict[str, bytes]) -> Callable[[Path], None]:
    """`run` after writing `files` (name: content) into the folder."""

    def with_files(tmp: Path) -> None:
        for name, content in files.items():
            (tmp / name).write_bytes(content)
        run(tmp)

    return with_files


def _oracle_pipeline(run: Callable[[Path], None]) -> Callable[[Path], None]:
    """`run` with a small pipeline at TMP/pipeline (its model answers with gold entities)."""

    def with_pipeline(tmp: Path) -> None:
        from spacy.tokens import DocBin, Span

        nlp = spacy.blank("en")
        doc = nlp("Barack Obama visited Paris .")
        doc.ents = [Span(doc, 0, 2, "person")]
        DocBin(docs=[doc]).to_disk(tmp / "gold.spacy")
        model = {"@misc": "spacy_recot.Oracle.v1", "gold": str(tmp / "gold.spacy"), "output_format": "entities"}
        nlp.add_pipe("recot_ner", config={"labels": ["person"], "model": model})
        nlp.to_disk(tmp / "pipeline")
        run(tmp)

    return with_pipeline


CONLL = b"Barack\tB-person\nObama\tI-person\n"
RECORD = b'{"text": "Barack Obama visited Paris ."}\n'


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
            "a dtype torch does not have (refused by spaCy's config check)",
            _pipe({"labels": ["a"], "model": {**seq2seq, "dtype": "float7"}}),
            "model -> dtype",
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
        # Untrusted pipelines and payloads: no code runs, no file escapes.
        (
            "generation settings that load code (a saved config, say)",
            _pipe({"labels": ["a"], "model": {**seq2seq, "generation": {"custom_generate": "org/recipe"}}}),
            "model.generation.custom_generate",
        ),
        (
            "trust_remote_code in the generation settings",
            _pipe({"labels": ["a"], "model": {**seq2seq, "generation": {"trust_remote_code": True}}}),
            "model.generation.trust_remote_code",
        ),
        (
            "a generation setting the backends do not support",
            _pipe({"labels": ["a"], "model": {**seq2seq, "generation": {"return_dict_in_generate": True}}}),
            "model.generation.return_dict_in_generate",
        ),
        ("a model folder whose config asks to run its own code", _model_with_its_own_code, "custom code"),
        ("bytes naming a file outside their folder", _bytes_outside, "not a plain relative path"),
        (
            "a server URL with a password in it",
            _pipe(
                {
                    "labels": ["a"],
                    "model": {
                        "@misc": "spacy_recot.OpenAICompatible.v1",
                        "base_url": "http://user:secret@127.0.0.1:1/v1",
                        "model": "m",
                    },
                }
            ),
            "model.api_key_env",
        ),
        # The command line: one-line errors, nothing half written.
        (
            "annotate: a pipeline that does not exist",
            _with_files(_cli("annotate", "TMP/no_pipeline", "TMP/in.jsonl", "TMP/out"), {"in.jsonl": RECORD}),
            "No pipeline at",
        ),
        (
            "annotate: an input line that is not UTF-8",
            _oracle_pipeline(
                _with_files(
                    _cli("annotate", "TMP/pipeline", "TMP/in.jsonl", "TMP/out"), {"in.jsonl": RECORD + b"caf\xe9\n"}
                )
            ),
            "in.jsonl:2: not UTF-8",
        ),
        (
            "annotate: an input line nested too deeply",
            _oracle_pipeline(
                _with_files(
                    _cli("annotate", "TMP/pipeline", "TMP/in.jsonl", "TMP/out"),
                    {"in.jsonl": b"[" * 100000 + b"]" * 100000},
                )
            ),
            "nested too deeply",
        ),
        (
            "annotate: an input field the output writes",
            _oracle_pipeline(
                _with_files(
                    _cli("annotate", "TMP/pipeline", "TMP/in.jsonl", "TMP/out"),
                    {"in.jsonl": b'{"text": "Barack Obama", "entities": []}\n'},
                )
            ),
            "in.jsonl:1: has a field 'entities'",
        ),
        (
            "annotate: an output folder that is a file",
            _oracle_pipeline(
                _with_files(_cli("annotate", "TMP/pipeline", "TMP/in.jsonl", "TMP/in.jsonl"), {"in.jsonl": RECORD})
            ),
            "cannot be made",
        ),
        (
            "convert: --limit below 0",
            _with_files(_cli("convert", "TMP/data.txt", "TMP/x.spacy", "-n", "-1"), {"data.txt": CONLL}),
            "--limit",
        ),
        (
            "convert: a label file that does not exist",
            _with_files(_cli("convert", "TMP/data.txt", "TMP/x.spacy", "-l", "TMP/none.txt"), {"data.txt": CONLL}),
            "no such label file",
        ),
        (
            "convert: a folder as output",
            _with_files(_cli("convert", "TMP/data.txt", "TMP"), {"data.txt": CONLL}),
            "is a folder",
        ),
        ("show: a pipeline that does not exist", _cli("show", "TMP/no_pipeline", "Hi", "-o", "TMP/p.html"), "E050"),
        (
            "show: a page that cannot be written",
            _oracle_pipeline(_with_files(_cli("show", "TMP/pipeline", "Hi", "-o", "TMP/x/p.html"), {"x": b"a file"})),
            "cannot write",
        ),
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
