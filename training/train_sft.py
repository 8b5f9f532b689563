"""CoT tuning of a causal model (ReasoningNER's SFT stage) with TRL's SFTTrainer.

    python training/train_sft.py corpus/ner_cot.jsonl --model Qwen/Qwen3-1.7B-Base --output-dir training/sft

Each NER-CoT record (`python -m spacy_recot cot-data`, or a public NER-CoT file)
becomes the user turn of the model's chat template holding ReasoningNER's
prompt, and the answer `<think>\\n{cot}\\n</think>\\n{json}` then the end of the
turn; the loss covers the answer only (prompt tokens are labelled -100). The
output folder loads in `spacy_recot.HFCausal.v2` unchanged (LoRA adapters are
merged into the weights; the adapter is also kept under `adapter/`).

Options: `--no-cot` (the paper's ablation: the JSON alone), `--format bio` (the
words with BIO tags under the ReCoT prompt, for RCLoss on a causal model),
`--loss rcloss|ce`, `--lora`, `--deepspeed configs/ds_zero3.json`, `--resume`.
The reference recipe (Qwen3-1.7B/8B-Base): lr 2e-5, cosine, warm-up 0.03, 5
epochs, max length 8192, bf16, ZeRO-3.
"""

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from spacy_recot import training as t
from spacy_recot.training import LOSSES, end_of_turn

logger = logging.getLogger("train_sft")
FORMATS = ("reasoning", "bio")


def bio_example(record: Dict[str, Any]) -> Dict[str, Any]:
    """The record under the ReCoT prompt, answered with every word and its BIO tag."""
    from spacy_recot.chunks import Chunk
    from spacy_recot.tasks import make_recot_prompt
    from spacy_recot.tasks.spans import find_spans

    prompt = make_recot_prompt()
    chunk = Chunk.from_text(record["sentence"])
    starts = {s: i for i, (s, _) in enumerate(chunk.offsets)}
    ends = {e: i + 1 for i, (_, e) in enumerate(chunk.offsets)}
    found = find_spans(
        chunk.text, [(e["text"], e["label"]) for e in record["entities"]], lambda s, e: s in starts and e in ends
    )
    spans = [(starts[s], ends[e], label) for s, e, label in found if s in starts and e in ends]
    return {
        "prompt": [{"role": "user", "content": prompt.render(chunk, record["schema"])}],
        "completion": [{"role": "assistant", "content": prompt.render_target(chunk, spans)}],
    }


def tokenize(example: Dict[str, Any], tokenizer: Any, max_length: int) -> Optional[Dict[str, Any]]:
    """input_ids, labels (-100 on the prompt) and b_mask (the `B` of each tag in
    the answer, for RCLoss); None when the example does not fit `max_length`."""
    from spacy_recot.rcloss import tag_b_positions

    prompt = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
    answer = example["completion"][0]["content"]
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    enc = tokenizer(answer + end_of_turn(tokenizer), add_special_tokens=False, return_offsets_mapping=True)
    wanted = tag_b_positions(answer)
    b_mask = [int(any(s <= p < e for p in wanted)) for s, e in enc["offset_mapping"]]
    ids = prompt_ids + enc["input_ids"]
    if len(ids) > max_length:
        return None
    return {
        "input_ids": ids,
        "labels": [-100] * len(prompt_ids) + enc["input_ids"],
        "b_mask": [0] * len(prompt_ids) + b_mask,
    }


class Collator:
    """Pads input_ids (pad id), labels (-100) and b_mask (0) on the right."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: List[Dict[str, Any]]) -> Dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)

        def pad(key: str, value: int) -> Any:
            return torch.tensor([r[key] + [value] * (width - len(r[key])) for r in rows])

        ids = pad("input_ids", self.pad_id)
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows])
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": pad("labels", -100),
            "b_mask": pad("b_mask", 0).bool(),
        }


def make_trainer_class() -> Any:
    from trl import SFTTrainer

    from spacy_recot.training import scale_for_accumulation, summed_token_loss

    class CoTTrainer(SFTTrainer):
        """SFTTrainer whose loss is RCLoss or cross-entropy over the answer tokens,
        normalised over the whole accumulated batch."""

        def __init__(self, *args: Any, loss: str = "ce", alpha: float = 1.2, beta: float = 1.0, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.loss_name, self.alpha, self.beta = loss, alpha, beta
            if loss == "rcloss":
                self.model_accepts_loss_kwargs = True

        def compute_loss(
            self, model: Any, inputs: Dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            inputs = dict(inputs)
            b_mask = inputs.pop("b_mask")
            if self.loss_name == "ce":
                # TRL's own loss: the same cross-entropy on the unmasked labels,
                # and its memory-saving LM head, instead of full float32 logits.
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            # A causal model predicts token t+1 at position t.
            logits, labels, b_mask = outputs.logits[:, :-1], labels[:, 1:], b_mask[:, 1:]
            total = summed_token_loss(logits, labels, b_mask, self.loss_name, self.alpha, self.beta)
            loss = scale_for_accumulation(self, total, labels, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

    return CoTTrainer


def train(
    data: List[Path] = typer.Argument(
        ...,
        help="NER-CoT records (JSON lines from cot-data, or a public NER-CoT file); .spacy / Pile-NER files give records without a chain.",
    ),
    model: str = typer.Option(
        ..., "--model", "-m", help="A causal model with a chat template: a folder or a hub id (Qwen3-1.7B-Base ...)."
    ),
    output_dir: Path = t.OUTPUT_DIR_OPTION,
    no_cot: bool = typer.Option(False, "--no-cot", help="Train on the JSON answer alone (the paper's ablation)."),
    answer_format: str = typer.Option(
        "reasoning",
        "--format",
        help="reasoning (think block + JSON, ReasoningNER's prompt) or bio (word(tag) under the ReCoT prompt).",
    ),
    loss: str = typer.Option(
        "ce", "--loss", help="ce (cross-entropy) or rcloss (recall-oriented, on the B of each BIO tag)."
    ),
    alpha: float = typer.Option(1.2, "--alpha"),
    beta: float = typer.Option(1.0, "--beta"),
    epochs: float = typer.Option(5.0, "--epochs"),
    max_steps: int = typer.Option(-1, "--max-steps", help="Stop after this many optimizer steps (-1: the epochs)."),
    lr: float = typer.Option(2e-5, "--lr"),
    scheduler: str = typer.Option("cosine", "--scheduler"),
    warmup: float = typer.Option(0.03, "--warmup", help="Warm-up, as a share of the steps."),
    batch_size: int = typer.Option(4, "--batch-size", help="Per device."),
    grad_accum: int = typer.Option(1, "--grad-accum"),
    max_length: int = typer.Option(8192, "--max-length", help="Longer examples are left out (counted)."),
    lora: bool = t.LORA_OPTION,
    lora_r: int = t.LORA_R_OPTION,
    lora_alpha: int = t.LORA_ALPHA_OPTION,
    merge: bool = t.MERGE_OPTION,
    prompt_name: str = t.PROMPT_OPTION,
    deepspeed: Optional[Path] = t.DEEPSPEED_OPTION,
    resume: bool = t.RESUME_OPTION,
    save_steps: int = typer.Option(
        0, "--save-steps", help="Checkpoint every N optimizer steps (0: at the end of each epoch)."
    ),
    limit: int = typer.Option(0, "--limit", help="Only the first N records of each file."),
    seed: int = t.SEED_OPTION,
    gradient_checkpointing: Optional[bool] = t.CHECKPOINTING_OPTION,
    local_rank: int = t.LOCAL_RANK_OPTION,
) -> None:
    """CoT tuning (SFT) of a causal model on NER-CoT records, loss on the answer only."""
    from datasets import Dataset
    from trl import SFTConfig

    from spacy_recot import cot_data as cd

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if answer_format not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {FORMATS}, not {answer_format!r}")
    if loss not in LOSSES:
        raise typer.BadParameter(f"--loss must be one of {LOSSES}, not {loss!r}")
    if loss == "rcloss" and answer_format != "bio":
        raise typer.BadParameter("--loss rcloss weights the B of BIO tags: use it with --format bio")
    try:
        prompt = t.training_prompt(prompt_name)
        t.prepare_deepspeed(deepspeed)
        tokenizer = t.chat_tokenizer(model)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    for path in data:
        if not path.exists():
            raise typer.BadParameter(f"{path} does not exist")
    records = [r for path in data for r in cd.read_training_records(path, limit)]
    counts = {"records": len(records), "too_long": 0}
    rows = []
    for record in records:
        if answer_format == "bio":
            example = bio_example(record)
        else:
            example = cd.chat_example(record, prompt, with_cot=not no_cot)
        row = tokenize(example, tokenizer, max_length)
        if row is None:
            counts["too_long"] += 1
            continue
        rows.append(row)
    if not rows:
        raise typer.BadParameter(f"No record fits --max-length {max_length} (of {len(records)} read)")
    if counts["too_long"]:
        logger.warning("%d records longer than --max-length %d were left out", counts["too_long"], max_length)
    net, bf16 = t.load_causal_lm(model)
    peft_config = t.lora_config(lora_r, lora_alpha) if lora else None
    args = SFTConfig(
        **t.trainer_arguments(
            output_dir,
            lr=lr,
            scheduler=scheduler,
            warmup=warmup,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            grad_accum=grad_accum,
            bf16=bf16,
            seed=seed,
            deepspeed=deepspeed,
            gradient_checkpointing=gradient_checkpointing,
        ),
        save_strategy="steps" if save_steps else "epoch",
        save_steps=save_steps or 500,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
    )
    trainer = make_trainer_class()(
        model=net,
        args=args,
        train_dataset=Dataset.from_list(rows),
        data_collator=Collator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        peft_config=peft_config,
        loss=loss,
        alpha=alpha,
        beta=beta,
    )
    seconds = t.train_and_save(trainer, tokenizer, output_dir, resume=resume, lora=lora, merge=merge)
    if trainer.is_world_process_zero():
        history = trainer.state.log_history
        summary = {
            "model": model,
            "data": [str(p) for p in data],
            "format": answer_format,
            "cot": not no_cot,
            "loss": loss,
            "lora": lora,
            "prompt": prompt_name,
            "seed": seed,
            "lr": lr,
            "epochs": epochs,
            "train_seconds_this_process": seconds,
            "counts": counts,
            "steps": [{k: h[k] for k in ("step", "epoch", "loss") if k in h} for h in history if "loss" in h],
        }
        t.write_training_log(output_dir, summary)
        t.plot_series(
            [("training loss", t.history_series(history, "loss"))],
            output_dir / "training_curves.png",
            "step",
            "CoT tuning",
        )
        typer.echo(f"Saved the model to {output_dir} ({len(rows)} examples, {counts['too_long']} too long)")


if __name__ == "__main__":
    typer.run(train)
