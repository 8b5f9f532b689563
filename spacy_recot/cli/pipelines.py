"""Commands that make and run pipelines: `init-pipeline`, `evaluate`, `show`, `annotate`."""

import json
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional, Tuple

import typer

from .app import app


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
    from ..evaluation import TOKENIZATIONS, evaluate_pipeline

    if tokenization not in TOKENIZATIONS:
        raise typer.BadParameter(f"--tokenization must be one of {list(TOKENIZATIONS)}, not {tokenization!r}")
    if tokenization == "reference":
        typer.echo(
            "Tokenization used: reference (docs made of each dataset's own words, as the papers evaluate). "
            "The other choice, --tokenization pipeline, re-tokenizes the text as `spacy evaluate` does."
        )
    else:
        typer.echo(
            "Tokenization used: pipeline (the text re-tokenized by the pipeline, as `spacy evaluate` does). "
            "The other choice, --tokenization reference, uses each dataset's own words, as the papers evaluate."
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


def read_labels_option(value: str) -> List[str]:
    """--labels: a JSON list in a file (a converted set's .labels.json) or the
    labels themselves, separated by commas."""
    path = Path(value)
    if value.endswith(".json") or path.is_file():
        from ..conll import load_label_list

        if not path.is_file():
            raise typer.BadParameter(f"--labels: {value} does not exist")
        try:
            return load_label_list(path)
        except ValueError as err:
            raise typer.BadParameter(f"--labels: {err}") from None
    labels = [label.strip() for label in value.split(",") if label.strip()]
    if not labels:
        raise typer.BadParameter("--labels: give the entity types, e.g. --labels person,location")
    return labels


def pipeline_license(model_dir: Optional[str], packaged_name: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """The license name and LICENSE text of a new pipeline (what `spacy package`
    puts in the package): a packaged model's (Apache-2.0, as this package's own),
    or the license file of a trained model's folder; None where unknown."""
    from ..licenses import license_file, own_license_text

    if packaged_name is not None:
        from ..backends.packaged import get_packaged_model

        name = get_packaged_model(packaged_name).license
        text = own_license_text()
        if text and name == "Apache-2.0":
            return name, f"The model ({packaged_name}) and spacy-recot are both under the Apache License 2.0.\n\n{text}"
        return name, None
    path = license_file(model_dir)
    return None, path.read_text(encoding="utf-8", errors="replace") if path else None


@app.command("init-pipeline")
def init_pipeline(
    output_dir: Path = typer.Argument(..., help="Where to write the spaCy pipeline."),
    labels: str = typer.Option(
        ...,
        "--labels",
        "-l",
        help="The entity types: comma-separated (person,location) or a JSON list file (a converted set's .labels.json).",
    ),
    model_dir: Optional[str] = typer.Option(
        None,
        "--model",
        "-m",
        help="A trained model: a folder (a training script's --output-dir) or a hub id. Default: the packaged default model (offline).",
    ),
    prompt: Optional[str] = typer.Option(
        None,
        "--prompt",
        "-p",
        help="The prompt the model was trained on: recot (the default with --model) or gner (seq2seq), reasoning "
        "(causal, ReasoningNER's prompt). Default without --model: the packaged model's own.",
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
    """Write a spaCy pipeline (blank English + recot_ner): around the packaged default
    model, or around a trained model (--model): seq2seq (ReCoT-NER, GNER-T5) or causal
    (ReasoningNER). `spacy.load`, `show`, `evaluate`, `annotate` and `spacy package` take
    it as it is."""
    import spacy

    from ..backends.packaged import DEFAULT_PACKAGED
    from ..factory import DEFAULT_MODEL
    from ..tasks import BIO_PROMPTS

    prompts = {**BIO_PROMPTS, "reasoning": "spacy_recot.ReasoningNERPrompt.v1"}
    if prompt is not None and prompt not in prompts:
        raise typer.BadParameter(f"--prompt must be one of {sorted(prompts)}, not {prompt!r}")
    if not name.isidentifier():
        raise typer.BadParameter(f"--name must be a Python identifier (spacy package needs one), not {name!r}")
    label_list = read_labels_option(labels)
    if backend_kind not in ("auto", "seq2seq", "causal"):
        raise typer.BadParameter(f"--backend must be auto, seq2seq or causal, not {backend_kind!r}")
    if model_dir is None:
        if backend_kind == "seq2seq":
            raise typer.BadParameter("--backend seq2seq needs --model: the packaged default model is causal")
        model: Dict[str, Any] = dict(DEFAULT_MODEL)
    else:
        prompt = prompt or "recot"
        if backend_kind == "auto":
            backend_kind = guess_model_kind(model_dir, prompt)
        if backend_kind == "seq2seq" and prompt == "reasoning":
            raise typer.BadParameter("--prompt reasoning needs a causal model (a seq2seq model cannot write its JSON)")
        model = {"@misc": INIT_BACKENDS[backend_kind], "name_or_path": model_dir}
    if max_new_tokens is None and prompt == "reasoning":
        max_new_tokens = REASONING_MAX_NEW_TOKENS
    # Only what is given: the backend's own defaults fill the rest.
    sizes = {"max_input_tokens": max_input_tokens, "max_new_tokens": max_new_tokens}
    model.update({key: value for key, value in sizes.items() if value is not None})
    config: Dict[str, Any] = {"labels": label_list, "model": model}
    if prompt is not None:
        config["prompt"] = {"@misc": prompts[prompt]}
    nlp = spacy.blank("en")
    nlp.meta["name"] = name
    try:
        nlp.add_pipe("recot_ner", config=config)
    except ValueError as err:  # the component's checks name the setting
        raise typer.BadParameter(str(err)) from None
    if model_dir is not None:
        # A trained model's weights are written into the pipeline: load them first. A
        # packaged model's folder only names its pip package, so it is not loaded here.
        nlp.initialize()
    license_name, license_text = pipeline_license(model_dir, None if model_dir else model.get("name", DEFAULT_PACKAGED))
    if license_name:
        nlp.meta["license"] = license_name
    nlp.to_disk(output_dir)
    if license_text:
        (output_dir / "LICENSE").write_text(license_text, encoding="utf-8")
    typer.echo(f"Wrote a pipeline with recot_ner ({model_dir or model['@misc']}) to {output_dir}")


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

    from ..display import render_page

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
    from ..corpus import annotate as run

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
