"""Command line: `python -m spacy_recot <command>`."""

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, NoReturn, Optional

import typer

app = typer.Typer(
    name="spacy_recot",
    help="Zero-shot NER with generative models for spaCy: data conversion, instruction data and evaluation.",
    no_args_is_help=True,
    add_completion=False,
)


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
    from .conll import convert as run_convert
    from .conll import labels_file

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
def evaluate(
    pipeline: str = typer.Argument(..., help="A pipeline folder or package name."),
    data: List[Path] = typer.Argument(..., help="One or more converted .spacy files (one per dataset)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the scores as JSON here."),
    component: str = typer.Option(
        "recot_ner", "--component", "-c", help="The recot_ner component whose labels to set."
    ),
    use_file_labels: bool = typer.Option(
        True,
        "--file-labels/--pipeline-labels",
        help="Ask for each dataset's own labels (DATA.labels.json) when it has them.",
    ),
    batch_size: int = typer.Option(8, "--batch-size", "-b"),
    limit: int = typer.Option(0, "--limit", "-n", min=0, help="Only the first N docs of each dataset (0: all)."),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g"),
    tokenization: str = typer.Option(
        "reference",
        "--tokenization",
        "-t",
        help="reference: docs made of the dataset's own words (the papers' protocol); pipeline: the text re-tokenized by the pipeline, as `spacy evaluate` does.",
    ),
) -> None:
    """Score a pipeline on datasets: spaCy's exact-span P/R/F and the papers'
    normalized set F1, per dataset and averaged."""
    from .evaluation import TOKENIZATIONS, evaluate_pipeline

    if tokenization not in TOKENIZATIONS:
        raise typer.BadParameter(f"--tokenization must be one of {list(TOKENIZATIONS)}, not {tokenization!r}")
    if tokenization == "reference":
        typer.echo(
            "Docs are built from each dataset's own words, as the papers evaluate (--tokenization pipeline: spaCy's tokenizer)."
        )
    else:
        typer.echo(
            "Docs are re-tokenized by the pipeline, as `spacy evaluate` does (the papers' protocol: --tokenization reference)."
        )
    missing = [str(path) for path in data if not path.exists()]
    if missing:
        typer.echo(f"Error: no data file at {', '.join(missing)}", err=True)
        raise typer.Exit(code=1)
    try:
        results = evaluate_pipeline(
            pipeline,
            data,
            component=component,
            use_file_labels=use_file_labels,
            batch_size=batch_size,
            limit=limit,
            gpu_id=gpu_id,
            show_progress=True,
            tokenization=tokenization,
        )
    except (OSError, ValueError) as err:
        # Bad pipelines, labels files and models: the message says which.
        typer.echo(f"Error: {type(err).__name__}: {err}", err=True)
        raise typer.Exit(code=1) from None
    header = f"{'dataset':<24} {'P':>7} {'R':>7} {'F':>7}   {'norm F':>7}  docs"
    typer.echo(header)
    for name, res in results["datasets"].items():
        typer.echo(
            f"{name:<24} {res['ents_p'] * 100:7.2f} {res['ents_r'] * 100:7.2f} {res['ents_f'] * 100:7.2f}   "
            f"{res['normalized']['f'] * 100:7.2f}  {res['n_docs']}"
        )
    typer.echo(
        f"{'average':<24} {'':>7} {'':>7} {results['average_ents_f'] * 100:7.2f}   "
        f"{results['average_normalized_f'] * 100:7.2f}"
    )
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"Wrote {output}")


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
    from .instruction_data import InstructionDataError
    from .instruction_data import preprocess as run_preprocess

    tok = None
    if tokenizer is not None:
        from transformers import AutoTokenizer

        from .backends import load_pretrained, trusts_remote_code

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


# The backends `init-pipeline` writes, by kind of model.
INIT_BACKENDS = {"seq2seq": "spacy_recot.HFSeq2Seq.v3", "causal": "spacy_recot.HFCausal.v2"}
# ReasoningNER writes its reasoning before the entities: its recipe lets a completion
# run to 4096 tokens (GRPO's max_completion_length, training/train_grpo.py).
REASONING_MAX_NEW_TOKENS = 4096


def guess_model_kind(model_dir: str, prompt: str) -> str:
    """seq2seq or causal: from the model's config.json (an encoder-decoder or
    not), or, without one (a hub id), from the prompt it was trained on."""
    config_file = Path(model_dir) / "config.json"
    if config_file.exists():
        is_seq2seq = bool(json.loads(config_file.read_text(encoding="utf-8")).get("is_encoder_decoder"))
    else:
        is_seq2seq = prompt != "reasoning"
    return "seq2seq" if is_seq2seq else "causal"


@app.command("init-pipeline")
def init_pipeline(
    model_dir: str = typer.Argument(
        ..., help="A trained model: a folder (a training script's --output-dir) or a hub id."
    ),
    output_dir: Path = typer.Argument(..., help="Where to write the spaCy pipeline."),
    labels: Path = typer.Option(
        ..., "--labels", "-l", help="The entity types: a JSON list (e.g. a converted set's .labels.json)."
    ),
    prompt: str = typer.Option(
        "recot",
        "--prompt",
        "-p",
        help="The prompt the model was trained on: recot or gner (seq2seq), reasoning (causal, ReasoningNER's prompt).",
    ),
    name: str = typer.Option("recot_ner", "--name", help="The pipeline's meta name (spacy package uses it)."),
    max_input_tokens: Optional[int] = typer.Option(
        None,
        "--max-input-tokens",
        help="Longer docs are split (use training's --max-source-length; default: the backend's own).",
    ),
    max_new_tokens: Optional[int] = typer.Option(
        None,
        "--max-new-tokens",
        help=f"The longest answer (default: the backend's own; {REASONING_MAX_NEW_TOKENS} with --prompt reasoning, whose reasoning comes first).",
    ),
    backend_kind: str = typer.Option(
        "auto",
        "--backend",
        help="auto (from the model's config.json: encoder-decoder or not; else from --prompt), seq2seq or causal.",
    ),
) -> None:
    """Write a spaCy pipeline (blank English + recot_ner) around a trained model:
    seq2seq (ReCoT-NER, GNER-T5) or causal (ReasoningNER); `spacy.load`,
    `spacy evaluate` and `spacy package` take it as it is."""
    import spacy

    from .tasks import BIO_PROMPTS

    prompts = {**BIO_PROMPTS, "reasoning": "spacy_recot.ReasoningNERPrompt.v1"}
    if prompt not in prompts:
        raise typer.BadParameter(f"--prompt must be one of {sorted(prompts)}, not {prompt!r}")
    if not name.isidentifier():
        raise typer.BadParameter(f"--name must be a Python identifier (spacy package needs one), not {name!r}")
    if not labels.exists():
        raise typer.BadParameter(f"{labels} does not exist")
    if backend_kind not in ("auto", "seq2seq", "causal"):
        raise typer.BadParameter(f"--backend must be auto, seq2seq or causal, not {backend_kind!r}")
    if backend_kind == "auto":
        backend_kind = guess_model_kind(model_dir, prompt)
    if backend_kind == "seq2seq" and prompt == "reasoning":
        raise typer.BadParameter("--prompt reasoning needs a causal model (a seq2seq model cannot write its JSON)")
    if max_new_tokens is None and prompt == "reasoning":
        max_new_tokens = REASONING_MAX_NEW_TOKENS
    # Only what is given: the backend's own defaults fill the rest.
    sizes = {"max_input_tokens": max_input_tokens, "max_new_tokens": max_new_tokens}
    model = {"@misc": INIT_BACKENDS[backend_kind], "name_or_path": model_dir}
    model.update({key: value for key, value in sizes.items() if value is not None})
    nlp = spacy.blank("en")
    nlp.meta["name"] = name
    nlp.add_pipe(
        "recot_ner",
        config={
            "labels": json.loads(labels.read_text(encoding="utf-8")),
            "model": model,
            "prompt": {"@misc": prompts[prompt]},
        },
    )
    nlp.initialize()
    nlp.to_disk(output_dir)
    typer.echo(f"Wrote a pipeline with recot_ner ({model_dir}) to {output_dir}")


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
    from .cot_data import chat_example
    from .jsonl import load_jsonl
    from .testing.tiny import tiny_qwen3, train_bpe_tokenizer

    lines: List[str] = []
    for record in _read_all(data, load_jsonl):
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
    from .instruction_data import read_instances
    from .testing.tiny import tiny_t5, train_t5_tokenizer

    lines: List[str] = []
    for row in _read_all(data, read_instances):
        lines.extend(row.get("source", "").splitlines() + [row.get("target", "")])
    tokenizer = train_t5_tokenizer(lines, vocab_size=vocab_size)
    _save_tiny("T5", tiny_t5(tokenizer, seed=seed, d_model=d_model, layers=layers), tokenizer, output_dir)


def _read_all(data: List[Path], read: Callable[[Path], List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
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


def _save_tiny(what: str, model: Any, tokenizer: Any, output_dir: Path) -> None:
    """Save a tiny model and its tokenizer, and say what was written."""
    from .testing.tiny import save_model

    save_model(model, tokenizer, output_dir)
    n = sum(p.numel() for p in model.parameters())
    typer.echo(f"Wrote a tiny {what} ({n:,} parameters, vocabulary {len(tokenizer)}) to {output_dir}")


def load_backend(spec: str, what: str) -> Any:
    """A model backend from a JSON block (`{"@misc": "spacy_recot.HFCausal.v2", ...}`,
    inline or in a file) or a pipeline folder (its recot_ner component's backend)."""
    import spacy
    from spacy.util import registry

    from .backends import ModelLoadError

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
    from .cot_data import CoTDataError, make_ner_cot
    from .instruction_data import InstructionDataError

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
    from . import cot_data as cd
    from .jsonl import write_jsonl

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


@app.command()
def show(
    pipeline: str = typer.Argument(..., help="A pipeline folder or package name with a recot_ner component."),
    texts: List[str] = typer.Argument(..., help="Texts to process (a path to a .txt file reads one text a line)."),
    output: Path = typer.Option(Path("recot.html"), "--output", "-o", help="The HTML page to write."),
    component: str = typer.Option("recot_ner", "--component", "-c"),
) -> None:
    """Process texts and write an HTML page: the entities marked (displaCy), each
    with its label and score, and a table of entities with their reasons."""
    import spacy

    from .display import render_page

    def fail(message: str) -> NoReturn:
        typer.echo(f"Error: {message}", err=True)
        raise typer.Exit(code=1)

    if output.is_dir():
        fail(f"{output} is a folder: give the HTML file to write (--output)")
    try:  # before any model runs: an output that cannot be written fails now
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(f"cannot write {output}: {err}")
    try:
        nlp = spacy.load(pipeline)
    except (OSError, ValueError) as err:  # no such pipeline, a bad config: the message says which
        fail(f"{type(err).__name__}: {err}")
    if component not in nlp.pipe_names:
        raise typer.BadParameter(f"the pipeline {pipeline} has no component '{component}' (it has {nlp.pipe_names})")
    lines: List[str] = []
    for text in texts:
        path = Path(text)
        if path.suffix == ".txt" and path.is_file():
            lines.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        else:
            lines.append(text)
    docs = list(nlp.pipe(lines))
    try:
        output.write_text(render_page(docs, component), encoding="utf-8")
    except OSError as err:
        fail(f"cannot write {output}: {err}")
    typer.echo(f"Wrote {output} ({len(docs)} docs)")


@app.command()
def annotate(
    pipeline: str = typer.Argument(..., help="A pipeline folder or package name."),
    input_path: Path = typer.Argument(..., help="A .txt file (one doc a line) or .jsonl file (a 'text' field)."),
    output: Path = typer.Argument(..., help="The folder for the shards (shard-00000.jsonl, ...)."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl, docbin (.spacy) or both."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Records per shard (the unit of resumption)."),
    text_field: str = typer.Option("text", "--text-field", help="The JSONL field holding the text."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Docs nlp.pipe buffers (default: spaCy's)."),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (Ray Data actor pool)."),
    actors: int = typer.Option(1, "--actors", help="With --engine ray: pipelines (actors) at once."),
    gpus_per_actor: float = typer.Option(0.0, "--gpus-per-actor", help="With --engine ray: GPUs each actor takes."),
    address: Optional[str] = typer.Option(None, "--address", help="With --engine ray: a cluster address (ray://...)."),
) -> None:
    """Annotate a corpus into JSONL and/or DocBin shards, resumably: a rerun
    skips the shards written, and retries those whose docs failed. A record
    that can never be annotated is listed, with its line number, in its shard's
    errors file (errors-00000.jsonl); the rest of its shard is written."""
    from .corpus import annotate as run

    try:
        summary = run(
            pipeline,
            input_path,
            output,
            fmt=fmt,
            shard_size=shard_size,
            text_field=text_field,
            batch_size=batch_size,
            engine=engine,
            actors=actors,
            gpus_per_actor=gpus_per_actor,
            address=address,
        )
    except ValueError as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{output}: {summary['written']} shards written, {summary['skipped']} already there, "
        f"{len(summary['failed'])} failed (of {summary['shards']})"
    )
    for path, count in sorted(summary["bad_records"].items()):
        typer.echo(f"{path}: {count} record{'s' * (count != 1)} that cannot be annotated (line and why)", err=True)
    for index, error in sorted(summary["failed"].items()):
        typer.echo(f"shard {index}: {error}", err=True)
    if summary["failed"]:
        typer.echo("Run the same command again to retry the failed shards.", err=True)
        raise typer.Exit(1)


def main() -> None:
    app()
