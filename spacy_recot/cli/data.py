"""Commands that make and check data: `convert`, `preprocess`, `cot-data`, `grpo-sample`."""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from .app import app


@app.command()
def convert(
    input_path: Path = typer.Argument(..., help="A CoNLL BIO file (CrossNER, GNER layout, MIT), or a folder of them."),
    output_path: Path = typer.Argument(..., help="The .spacy file to write (a folder when INPUT is a folder)."),
    label_map: Optional[Path] = typer.Option(
        None,
        "--label-map",
        "-m",
        help='JSON object renaming labels, e.g. {"programlang": "programming language"}; "O" drops a label.',
    ),
    labels: Optional[Path] = typer.Option(
        None, "--labels", "-l", help="label.txt with the label set (found beside INPUT in the GNER layout)."
    ),
    limit: int = typer.Option(0, "--limit", "-n", min=0, help="Keep only the first N sentences of each file (0: all)."),
) -> None:
    """Convert CoNLL BIO files into DocBins (and OUTPUT.labels.json beside each).

    With a folder, every .txt file below it but label.txt is converted, and the
    folder tree is mirrored under OUTPUT (gner/crossner_ai/test.txt becomes
    OUTPUT/crossner_ai/test.spacy).
    """
    from ..conll import convert as run_convert
    from ..conll import labels_file

    if input_path.is_dir():
        jobs = [
            (path, output_path / path.relative_to(input_path).with_suffix(".spacy"))
            for path in sorted(input_path.rglob("*.txt"))
            if path.name != "label.txt"
        ]
        if not jobs:
            typer.echo(f"Error: no .txt files below {input_path}", err=True)
            raise typer.Exit(code=1)
    else:
        jobs = [(input_path, output_path)]
    for source, target in jobs:
        try:
            n_docs, label_list, counts = run_convert(source, target, label_map, labels, limit)
        except (ValueError, OSError) as err:  # bad files (ConllFormatError), an output that cannot be written
            typer.echo(f"Error: {err if isinstance(err, ValueError) else f'{target}: {err}'}", err=True)
            raise typer.Exit(code=1) from None
        typer.echo(f"{source} -> {target}: {n_docs} docs, {len(label_list)} labels ({labels_file(target).name})")
        for key, value in sorted(counts.items()):
            typer.echo(f"  {key}: {value}")


@app.command()
def preprocess(
    input_path: Path = typer.Argument(
        ...,
        help="Pile-NER: the conversation format (Universal-NER/Pile-NER-type, JSON or JSON lines) or GLiNER's token format; or a converted CoNLL set (.spacy).",
    ),
    output_path: Path = typer.Argument(..., help="The instruction data to write (JSON lines)."),
    prompt: str = typer.Option("recot", "--prompt", "-p", help="recot (two-step chain of thought) or gner."),
    negatives: int = typer.Option(
        0, "--negatives", help="Labels sampled from the whole file's label set and added to each instance."
    ),
    max_words: int = typer.Option(
        120, "--max-words", help="Split longer passages (between entities), when no tokenizer is given."
    ),
    tokenizer: Optional[str] = typer.Option(
        None,
        "--tokenizer",
        "-t",
        help="Measure length in this tokenizer's tokens (a folder or hub id) instead of words.",
    ),
    max_source_tokens: int = typer.Option(
        640, "--max-source-tokens", help="With --tokenizer: the longest source (prompt, labels, words)."
    ),
    max_target_tokens: int = typer.Option(640, "--max-target-tokens", help="With --tokenizer: the longest target."),
    keep_case: bool = typer.Option(
        False, "--keep-case", help="Keep the labels' case (default: lower-case, as the test sets)."
    ),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Turn Pile-NER into instruction data for the seq2seq model: per passage the
    prompt with its labels (shuffled per instance) and every word with its BIO tag."""
    from ..instruction_data import InstructionDataError
    from ..instruction_data import preprocess as run_preprocess

    tok = None
    if tokenizer is not None:
        from transformers import AutoTokenizer

        from ..backends import load_pretrained, trusts_remote_code

        tok = load_pretrained(AutoTokenizer, tokenizer, trust_remote_code=trusts_remote_code(tokenizer))
    try:
        counts = run_preprocess(
            input_path,
            output_path,
            prompt=prompt,
            seed=seed,
            n_negatives=negatives,
            max_words=max_words,
            tokenizer=tok,
            max_source_tokens=max_source_tokens,
            max_target_tokens=max_target_tokens,
            lowercase=not keep_case,
        )
    except (InstructionDataError, ValueError) as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"{input_path} -> {output_path}")
    for key, value in sorted(counts.items()):
        typer.echo(f"  {key}: {value}")


def load_backend(spec: str, what: str) -> Any:
    """A model backend from a JSON block (`{"@misc": "spacy_recot.HFCausal.v2", ...}`,
    inline or in a file) or a pipeline folder (its recot_ner component's backend)."""
    import spacy
    from spacy.util import registry

    from ..backends import ModelLoadError

    text = spec
    if not spec.lstrip().startswith("{") and Path(spec).is_file():
        text = Path(spec).read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        try:
            block = json.loads(text)
            backend = registry.resolve({"model": block})["model"]
        except Exception as err:  # noqa: BLE001 - any config error, named
            raise typer.BadParameter(f"{what}: not a usable backend block ({type(err).__name__}: {err})") from None
    elif Path(spec).is_dir() and (Path(spec) / "config.cfg").exists():
        nlp = spacy.load(spec)
        pipes = [p for _, p in nlp.pipeline if hasattr(p, "prompt") and hasattr(p, "model")]
        if not pipes:
            raise typer.BadParameter(f"{what}: the pipeline {spec} has no recot_ner component")
        backend = pipes[0].model
    else:
        raise typer.BadParameter(
            f"{what}: {spec!r} is neither a JSON backend block, a file holding one, nor a pipeline folder"
        )
    try:
        if not backend.is_loaded:
            backend.load()
    except ModelLoadError as err:
        raise typer.BadParameter(f"{what}: {err}") from None
    return backend


@app.command("cot-data")
def cot_data_command(
    inputs: List[Path] = typer.Argument(
        ...,
        help="Labelled data: converted .spacy sets or Pile-NER files; or NER-CoT files (JSON / JSON lines with a 'cot'), which skip stage (a).",
    ),
    output_dir: Path = typer.Argument(
        ..., help="Where each stage writes its JSON lines (and ner_cot.jsonl, the result)."
    ),
    teacher: Optional[str] = typer.Option(
        None, "--teacher", help="The teacher backend: a JSON block, a file holding one, or a pipeline folder."
    ),
    judge_model: Optional[str] = typer.Option(
        None, "--judge", help="The judge backend (unconstrained): as --teacher. Without it stage (c) is skipped."
    ),
    threshold: int = typer.Option(9, "--threshold", help="The lowest judge score (0-10) kept."),
    show_gold: bool = typer.Option(
        False, "--show-gold/--no-show-gold", help="Show the teacher the annotated entities and ask it to explain them."
    ),
    match_gold: bool = typer.Option(
        False,
        "--match-gold/--no-match-gold",
        help="Stage (b) also drops records whose entities differ from the annotation.",
    ),
    gold_answer: bool = typer.Option(
        False,
        "--gold-answer/--no-gold-answer",
        help="Answer each record with its annotated entities and keep it when the teacher's chain names them all (ReasoningNER's recipe), instead of checking the teacher's JSON.",
    ),
    limit: int = typer.Option(0, "--limit", "-n", min=0, help="Only the first N records of each input (0: all)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b"),
) -> None:
    """Build NER-CoT records (sentence, schema, cot, entities) in three resumable
    stages: (a) a teacher annotates, (b) rules validate, (c) a judge scores."""
    from ..cot_chains import make_ner_cot
    from ..cot_data import CoTDataError
    from ..instruction_data import InstructionDataError

    try:
        counts, kept = make_ner_cot(
            inputs,
            output_dir,
            teacher=(lambda: load_backend(teacher, "--teacher")) if teacher else None,
            judge_model=(lambda: load_backend(judge_model, "--judge")) if judge_model else None,
            threshold=threshold,
            show_gold=show_gold,
            match_gold=match_gold,
            gold_answer=gold_answer,
            limit=limit,
            batch_size=batch_size,
        )
    except (CoTDataError, InstructionDataError) as err:  # a missing or malformed input, a missing or constrained model
        raise typer.BadParameter(str(err)) from None
    for stage, c in counts.items():
        typer.echo(f"{stage}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    typer.echo(f"Wrote {kept} NER-CoT records to {output_dir / 'ner_cot.jsonl'}")


@app.command("grpo-sample")
def grpo_sample_command(
    inputs: List[Path] = typer.Argument(
        ..., help="Labelled sets (.spacy, Pile-NER, NER-CoT files); each is one source set."
    ),
    output: Path = typer.Argument(..., help="The sample to write (JSON lines: sentence, schema, entities, source)."),
    num_samples: int = typer.Option(5000, "--num-samples", help="Records in the sample."),
    max_count: int = typer.Option(10000, "--max-count", help="At most this many records from one source set."),
    include_evaluation_sets: bool = typer.Option(
        False,
        "--include-evaluation-sets",
        help="Also sample the seven evaluation sets' training data (ReasoningNER's sample does; then they are no longer zero-shot).",
    ),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """ReasoningNER's stratified GRPO sample, with the evaluation sets kept out by default."""
    from .. import cot_data as cd
    from ..jsonl import write_jsonl

    records: List[Dict[str, Any]] = []
    for path in inputs:
        if not path.exists():
            raise typer.BadParameter(f"{path} does not exist")
        records.extend(cd.read_training_records(path))
    sample, report = cd.stratified_sample(records, num_samples, max_count, seed, not include_evaluation_sets)
    keys = ("guid", "sentence", "schema", "entities", "source")
    write_jsonl(output, ({k: r.get(k) for k in keys} for r in sample))
    if report["excluded_evaluation_sets"]:
        typer.echo(
            f"Left out (evaluation sets; --include-evaluation-sets takes them): {', '.join(report['excluded_evaluation_sets'])}"
        )
    typer.echo("Taken: " + ", ".join(f"{s} {n}" for s, n in report["taken"].items()))
    typer.echo(f"Wrote {len(sample)} records to {output}")
