"""Instruction-tune a T5 / Flan-T5 model for ReCoT-NER (or GNER) with RCLoss.

    python training/train_seq2seq.py corpus/pile_ner/train.jsonl corpus/crossner/ai/dev.spacy \
        --model google/flan-t5-base --output-dir training/flan-t5-base-recot \
        --loss rcloss --alpha 1.2 --beta 1.0 --prompt recot --epochs 20

The paper's setting (DESIGN.md): AdamW, learning rate 5e-5 constant, no
warm-up, no weight decay, source and target up to 640 tokens, batch 16, bf16
(when the hardware has it), 20 epochs for small/base and 6 for large, best
epoch by dev F1. At the end of each epoch the model generates on the dev set
through the `recot_ner` component (the same parse and alignment as at
inference) and spaCy's Scorer gives P/R/F; the best epoch is kept and saved in
`--output-dir`, which `spacy_recot.HFSeq2Seq.v1` loads as it is. Training
resumes from the last checkpoint with `--resume`. `--deepspeed
configs/ds_zero2.json` (or ds_zero3.json) trains with DeepSpeed: on one CPU
process directly, on GPUs under the `deepspeed` launcher (README).
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import typer

from spacy_recot.instruction_data import read_instances
from spacy_recot.tasks import BIO_PROMPTS, bio_prompt
from spacy_recot.training import single_process_env, train_resuming, write_training_log

LOSSES = ("rcloss", "ce")
logger = logging.getLogger("train_seq2seq")


def render_pairs(rows: Sequence[Dict[str, Any]], prompt_name: str) -> List[Dict[str, str]]:
    """Source and target of each instance, rendered with `prompt_name` (so that
    the prompt ablation is a flag here, not a second preprocessing run)."""
    from spacy_recot.chunks import Chunk
    from spacy_recot.tasks.bio_tags import tags_to_spans

    prompt = bio_prompt(prompt_name)
    pairs = []
    for row in rows:
        chunk = Chunk.from_words(row["words"])
        spans = list(tags_to_spans(list(row["tags"])))
        pairs.append({"source": prompt.render(chunk, row["labels"]), "target": prompt.render_target(chunk, spans)})
    return pairs


@dataclass
class InstructionCollator:
    """Tokenizes sources and targets into a batch; adds the `b_mask` RCLoss weights.
    Truncated rows are counted in `truncated` and reported once (they teach the
    model to stop early: preprocess with --tokenizer to avoid them)."""

    tokenizer: Any
    max_source_length: int = 640
    max_target_length: int = 640

    def __post_init__(self) -> None:
        self.truncated = {"source": 0, "target": 0}
        self._warned = False

    def _note_truncated(self, texts: List[str], offsets: Any, key: str, limit: int) -> None:
        # A row was cut when text is left after its last token (read off the
        # offsets of the one tokenization, not by tokenizing again).
        ends = offsets[..., 1].max(dim=1).values.tolist()
        self.truncated[key] += sum(end < len(text.rstrip()) for text, end in zip(texts, ends))
        if self.truncated[key] and not self._warned:
            self._warned = True
            logger.warning(
                "Some %ss are longer than %d tokens and are truncated; preprocess with "
                "--tokenizer and --max-target-tokens, or raise the limit",
                key,
                limit,
            )

    def __call__(self, rows: List[Dict[str, str]]) -> Dict[str, Any]:
        from spacy_recot.rcloss import b_mask_from_offsets, tokenize_with_offsets

        sources = [r["source"] for r in rows]
        targets = [r["target"] for r in rows]
        enc = tokenize_with_offsets(self.tokenizer, sources, self.max_source_length)
        self._note_truncated(sources, enc.pop("offset_mapping"), "source", self.max_source_length)
        tgt = tokenize_with_offsets(self.tokenizer, targets, self.max_target_length)
        self._note_truncated(targets, tgt["offset_mapping"], "target", self.max_target_length)
        labels = tgt["input_ids"].masked_fill(tgt["attention_mask"] == 0, -100)
        b_mask = b_mask_from_offsets(targets, tgt["offset_mapping"], labels)
        return {**enc, "labels": labels, "b_mask": b_mask}


def make_trainer_class() -> Any:
    """The Seq2SeqTrainer subclass (built lazily: importing transformers is slow)."""
    from transformers import Seq2SeqTrainer

    from spacy_recot.training import scale_for_accumulation, summed_token_loss

    class ReCoTTrainer(Seq2SeqTrainer):
        """Seq2SeqTrainer with RCLoss (or plain cross-entropy computed the same
        way) and an evaluation that generates on the dev set and scores F1."""

        def __init__(
            self,
            *args: Any,
            loss: str,
            alpha: float,
            beta: float,
            dev: "DevScorer",
            run_info: Dict[str, Any],
            **kwargs: Any,
        ):
            super().__init__(*args, **kwargs)
            self.loss_name = loss
            self.alpha = alpha
            self.beta = beta
            self.dev = dev
            self.run_info = run_info  # what training_log.json records about the run
            # Make the Trainer count the target tokens of the whole accumulated
            # batch (num_items_in_batch), so the loss below is normalised by it
            # and accumulation 2 equals a batch twice the size.
            self.model_accepts_loss_kwargs = True

        def compute_loss(
            self, model: Any, inputs: Dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            inputs = dict(inputs)
            b_mask = inputs.pop("b_mask")
            labels = inputs["labels"]
            outputs = model(**inputs)
            total = summed_token_loss(outputs.logits, labels, b_mask, self.loss_name, self.alpha, self.beta)
            loss = scale_for_accumulation(self, total, labels, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

        def evaluate(
            self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval", **kwargs: Any
        ) -> Dict[str, float]:
            """Dev P/R/F by generating through the component (`eval_dataset` is not used)."""
            model = self.accelerator.unwrap_model(self.model)
            was_training = model.training
            model.eval()
            scores = self.dev.score(model, self.processing_class)
            if was_training:
                model.train()
            metrics = {f"{metric_key_prefix}_{k}": v for k, v in scores.items()}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return ReCoTTrainer


class DevScorer:
    """Scores a model on a converted CoNLL set (.spacy) through the `recot_ner` component."""

    def __init__(
        self,
        path: Path,
        prompt_name: str,
        limit: int = 0,
        batch_size: int = 16,
        max_source_length: int = 640,
        max_new_tokens: int = 640,
    ):
        import spacy

        from spacy_recot.conll import read_docbin, read_labels

        self.nlp = spacy.blank("en")
        self.docs = read_docbin(path, self.nlp.vocab, limit)
        self.labels = read_labels(path, self.docs)
        generation: Dict[str, Any] = {}
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # ZeRO-3 shards the weights: every rank must step through generate together.
            generation["synced_gpus"] = True
        self.batch_size = batch_size
        # The component as users run it; its backend gets the model in training
        # instead of loading one (weights are never loaded at construction).
        self.nlp.add_pipe(
            "recot_ner",
            config={
                "labels": self.labels,
                "model": {
                    "@misc": "spacy_recot.HFSeq2Seq.v3",
                    "name_or_path": "<the model in training>",
                    "max_input_tokens": max_source_length,
                    "max_new_tokens": max_new_tokens,
                    "generation": generation,
                },
                "prompt": {"@misc": BIO_PROMPTS[prompt_name]},
                "batch_size": batch_size,
            },
        )

    def score(self, model: Any, tokenizer: Any) -> Dict[str, float]:
        """Generate for every dev doc with `model` and score: precision, recall, f1 (spaCy's
        exact spans) and the papers' normalized F1."""
        from spacy_recot.evaluation import evaluate_dataset, make_examples

        backend = self.nlp.get_pipe("recot_ner").model
        backend.use_model(model, tokenizer)
        try:
            examples = make_examples(self.nlp, self.docs)
            res = evaluate_dataset(self.nlp, examples, "recot_ner", self.labels, self.batch_size)
        finally:
            backend.release()
        return {
            "precision": res["ents_p"],
            "recall": res["ents_r"],
            "f1": res["ents_f"],
            "normalized_f1": res["normalized"]["f"],
        }


def plot_curves(log_history: List[Dict[str, Any]], path: Path) -> None:
    """Training loss and dev precision/recall/F1 per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["epoch"], h["loss"]) for h in log_history if "loss" in h and "epoch" in h]
    dev = [h for h in log_history if "eval_f1" in h]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        ax1.plot(*zip(*train), marker="o")
    ax1.set(xlabel="epoch", ylabel="training loss", title="Loss")
    for key, name in (("eval_precision", "precision"), ("eval_recall", "recall"), ("eval_f1", "F1")):
        ax2.plot([h["epoch"] for h in dev], [h[key] for h in dev], marker="o", label=name)
    ax2.set(xlabel="epoch", ylabel="dev score", title="Dev set", ylim=(0, 1))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def epoch_table(log_history: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per epoch: training loss and dev scores."""
    rows: Dict[float, Dict[str, Any]] = {}
    for h in log_history:
        if "epoch" not in h:
            continue
        row = rows.setdefault(round(h["epoch"], 4), {"epoch": round(h["epoch"], 4)})
        if "loss" in h:
            row["loss"] = h["loss"]
        for key in ("eval_precision", "eval_recall", "eval_f1", "eval_normalized_f1"):
            if key in h:
                row[key[len("eval_") :]] = h[key]
    return [rows[k] for k in sorted(rows) if len(rows[k]) > 1]


def build_trainer(
    train_path: Path,
    dev_path: Path,
    model: str,
    output_dir: Path,
    *,
    loss: str = "rcloss",
    alpha: float = 1.2,
    beta: float = 1.0,
    prompt: str = "recot",
    epochs: float = 20,
    learning_rate: float = 5e-5,
    batch_size: int = 16,
    grad_accum: int = 1,
    max_source_length: int = 640,
    max_target_length: int = 640,
    dev_limit: int = 0,
    eval_batch_size: int = 16,
    deepspeed: Optional[Path] = None,
    seed: int = 42,
    max_steps: int = -1,
) -> Any:
    """The configured trainer (the paper's optimiser settings; see the module docstring)."""
    if loss not in LOSSES:
        raise ValueError(f"--loss must be one of {LOSSES}, not {loss!r}")
    bio_prompt(prompt)  # fails early on an unknown name
    for path in (train_path, dev_path) + ((deepspeed,) if deepspeed else ()):
        if not Path(path).exists():
            raise ValueError(f"{path} does not exist")
    if deepspeed:
        single_process_env()
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, Seq2SeqTrainingArguments, set_seed

    from spacy_recot.backends import load_pretrained

    set_seed(seed)
    tokenizer = load_pretrained(AutoTokenizer, model)
    net = load_pretrained(AutoModelForSeq2SeqLM, model)
    pairs = render_pairs(read_instances(train_path), prompt)
    dev = DevScorer(
        dev_path,
        prompt,
        limit=dev_limit,
        batch_size=eval_batch_size,
        max_source_length=max_source_length,
        max_new_tokens=max_target_length,
    )
    cuda = torch.cuda.is_available()
    args = Seq2SeqTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        optim="adamw_torch",
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        use_cpu=not cuda,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="f1",
        greater_is_better=True,
        save_total_limit=2,
        remove_unused_columns=False,
        report_to=[],
        seed=seed,
        deepspeed=str(deepspeed) if deepspeed else None,
    )
    trainer = make_trainer_class()(
        model=net,
        args=args,
        train_dataset=pairs,
        # Read by our evaluate() only through `dev`; the Trainer wants one set.
        eval_dataset=dev.docs,
        data_collator=InstructionCollator(tokenizer, max_source_length, max_target_length),
        processing_class=tokenizer,
        loss=loss,
        alpha=alpha,
        beta=beta,
        dev=dev,
        run_info={
            "model": model,
            "loss": loss,
            "alpha": alpha,
            "beta": beta,
            "prompt": prompt,
            "deepspeed": str(deepspeed) if deepspeed else None,
        },
    )
    return trainer


def run_training(trainer: Any, output_dir: Path, resume: bool = False) -> Dict[str, Any]:
    """Train (resuming from the last checkpoint when asked and there is one), save
    the best epoch's model and tokenizer in `output_dir`, write the per-epoch log
    (training_log.json) and the curves (training_curves.png)."""
    output_dir = Path(output_dir)
    train_resuming(trainer, output_dir, resume)
    trainer.save_model(str(output_dir))  # also saves the tokenizer (processing_class)
    history = trainer.state.log_history
    summary = {
        **trainer.run_info,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_f1": trainer.state.best_metric,
        "truncated": dict(trainer.data_collator.truncated),
        "epochs": epoch_table(history),
    }
    if trainer.is_world_process_zero():
        write_training_log(output_dir, summary)
        plot_curves(history, output_dir / "training_curves.png")
    return summary


def train(
    train_path: Path = typer.Argument(
        ..., help="Instruction data from `python -m spacy_recot preprocess` (JSON lines)."
    ),
    dev_path: Path = typer.Argument(..., help="A converted dev set (.spacy, from `python -m spacy_recot convert`)."),
    model: str = typer.Option(..., "--model", "-m", help="A T5 / Flan-T5 checkpoint: a folder or a hub id."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o"),
    loss: str = typer.Option("rcloss", "--loss", help="rcloss (recall-oriented) or ce (cross-entropy)."),
    alpha: float = typer.Option(1.2, "--alpha", help="RCLoss weight scale of the B tokens."),
    beta: float = typer.Option(1.0, "--beta", help="RCLoss weight scale of the other tokens."),
    prompt: str = typer.Option("recot", "--prompt", help="recot (two-step chain of thought) or gner."),
    epochs: float = typer.Option(20, "--epochs"),
    learning_rate: float = typer.Option(5e-5, "--learning-rate", "--lr"),
    batch_size: int = typer.Option(16, "--batch-size", help="Per device."),
    grad_accum: int = typer.Option(1, "--grad-accum"),
    max_source_length: int = typer.Option(640, "--max-source-length"),
    max_target_length: int = typer.Option(640, "--max-target-length"),
    dev_limit: int = typer.Option(0, "--dev-limit", help="Score only the first N dev docs (0: all)."),
    eval_batch_size: int = typer.Option(16, "--eval-batch-size"),
    deepspeed: Optional[Path] = typer.Option(
        None, "--deepspeed", help="A DeepSpeed config, e.g. configs/ds_zero2.json."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in --output-dir."),
    seed: int = typer.Option(42, "--seed"),
    max_steps: int = typer.Option(-1, "--max-steps", help="Stop after this many steps."),
    local_rank: int = typer.Option(
        -1, "--local_rank", "--local-rank", hidden=True, help="Set by the deepspeed launcher."
    ),
) -> None:
    """Train, keep the best epoch by dev F1, save it in --output-dir with a log and a plot."""
    try:
        trainer = build_trainer(
            train_path,
            dev_path,
            model,
            output_dir,
            loss=loss,
            alpha=alpha,
            beta=beta,
            prompt=prompt,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            grad_accum=grad_accum,
            max_source_length=max_source_length,
            max_target_length=max_target_length,
            dev_limit=dev_limit,
            eval_batch_size=eval_batch_size,
            deepspeed=deepspeed,
            seed=seed,
            max_steps=max_steps,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    summary = run_training(trainer, output_dir, resume)
    for row in summary["epochs"]:
        typer.echo(
            f"epoch {row['epoch']:>6}: loss {row.get('loss', float('nan')):.4f}  "
            f"P {row.get('precision', 0):.3f}  R {row.get('recall', 0):.3f}  F {row.get('f1', 0):.3f}"
        )
    typer.echo(f"Best dev F1 {summary['best_f1']} ({summary['best_checkpoint']}); model saved in {output_dir}")


if __name__ == "__main__":
    typer.run(train)
