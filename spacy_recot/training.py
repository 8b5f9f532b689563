"""What the training scripts share: the one-process distributed environment,
the token loss (RCLoss or cross-entropy) scaled for gradient accumulation, the
causal model, prompt, trainer settings and command-line options of the two TRL
scripts (train_sft.py, train_grpo.py), and the plot and log of a run."""

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import typer

from .licenses import license_file
from .net import free_port

LOSSES = ("rcloss", "ce")
logger = logging.getLogger("spacy_recot.training")

# The command-line options train_sft.py and train_grpo.py take alike.
OUTPUT_DIR_OPTION = typer.Option(..., "--output-dir", "-o")
LORA_OPTION = typer.Option(False, "--lora", help="Train a LoRA adapter (peft) instead of every weight.")
LORA_R_OPTION = typer.Option(16, "--lora-r")
LORA_ALPHA_OPTION = typer.Option(32, "--lora-alpha")
MERGE_OPTION = typer.Option(
    True, "--merge/--no-merge", help="With --lora: also save the merged model (else only adapter/, a few MB)."
)
PROMPT_OPTION = typer.Option(
    "reasoning",
    "--prompt",
    help="reasoning (ReasoningNER's verbatim prompt) or zero-shot-json (the component's default prompt).",
)
DEEPSPEED_OPTION = typer.Option(None, "--deepspeed", help="A DeepSpeed config, e.g. configs/ds_zero3.json.")
RESUME_OPTION = typer.Option(False, "--resume", help="Continue from the last checkpoint in --output-dir.")
SEED_OPTION = typer.Option(42, "--seed")
CHECKPOINTING_OPTION = typer.Option(
    None,
    "--gradient-checkpointing/--no-gradient-checkpointing",
    help="Recompute activations in the backward pass instead of keeping them (default: on a GPU only). "
    "A 1.5B model's GRPO step on the CPU needs it: ~20 GB of activations otherwise.",
)
LOCAL_RANK_OPTION = typer.Option(-1, "--local_rank", hidden=True, help="Set by the deepspeed launcher.")


def single_process_env() -> None:
    """DeepSpeed outside a launcher looks for MPI; a one-process group needs these."""
    if "WORLD_SIZE" not in os.environ:
        os.environ.update(
            RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port())
        )


def prepare_deepspeed(config: Optional[Path]) -> None:
    """Check a --deepspeed config exists and set up a one-process group for it."""
    if config is None:
        return
    if not Path(config).exists():
        raise ValueError(f"--deepspeed: {config} does not exist")
    single_process_env()


def train_resuming(trainer: Any, output_dir: Path, resume: bool) -> None:
    """`trainer.train()`, from the last checkpoint in `output_dir` when asked and there is one."""
    has_checkpoint = any(Path(output_dir).glob("checkpoint-*"))
    if resume and not has_checkpoint:
        logger.warning("--resume: no checkpoint in %s, training from the start", output_dir)
    trainer.train(resume_from_checkpoint=True if resume and has_checkpoint else None)


def chat_tokenizer(model: str, padding_side: Optional[str] = None) -> Any:
    """The tokenizer of a causal chat model (refused without a chat template), with a pad token."""
    from transformers import AutoTokenizer

    from .backends import load_pretrained

    tokenizer = load_pretrained(AutoTokenizer, model)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"--model {model}: the tokenizer has no chat template")
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def end_of_turn(tokenizer: Any) -> str:
    """What closes an assistant turn: ChatML's `<|im_end|>` when the tokenizer
    has it, else the end-of-sequence token."""
    return "<|im_end|>" if "<|im_end|>" in tokenizer.get_vocab() else tokenizer.eos_token


def lora_config(r: int = 16, alpha: int = 32) -> Any:
    """A peft LoRA adapter on every linear layer of a causal LM."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")


def summed_token_loss(logits: Any, labels: Any, b_mask: Any, loss: str, alpha: float = 1.2, beta: float = 1.0) -> Any:
    """The loss summed over the non-ignored target tokens: RCLoss (`b_mask` marks
    the `B` opening each tag) or cross-entropy, computed the same way."""
    import torch

    from .rcloss import recall_oriented_loss

    if loss == "rcloss":
        return recall_oriented_loss(logits, labels, b_mask, alpha, beta, reduction="sum")
    if loss == "ce":
        return torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
        )
    raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")


def scale_for_accumulation(trainer: Any, total: Any, labels: Any, num_items_in_batch: Optional[Any]) -> Any:
    """A summed loss as the HF Trainer wants it: divided by the target tokens of
    the whole accumulated batch, so accumulation 2 equals a batch twice the size."""
    if num_items_in_batch is None:
        # Outside training: a plain mean; the Trainer scales it for accumulation.
        trainer.loss_is_scaled_for_ga = False
        return total / (labels != -100).sum().clamp(min=1)
    trainer.loss_is_scaled_for_ga = True
    loss = total / num_items_in_batch
    if trainer.args.average_tokens_across_devices and trainer.args.n_gpu <= 1:
        # num_items_in_batch is summed over processes and DDP averages the
        # gradients: undo the average. (Under DataParallel, n_gpu > 1, the loss
        # is computed once on the gathered logits: nothing to undo.)
        loss = loss * (trainer.accelerator.num_processes // trainer.get_tp_size())
    return loss


def plot_series(series: Sequence[Tuple[str, List[Tuple[float, float]]]], path: Path, xlabel: str, title: str) -> None:
    """Named (x, y) series side by side, one panel each, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 4), squeeze=False)
    for ax, (name, points) in zip(axes[0], series):
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3)
        ax.set(xlabel=xlabel, ylabel=name, title=f"{title}: {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def history_series(log_history: List[Dict[str, Any]], key: str, x: str = "step") -> List[Tuple[float, float]]:
    """(x, value) for every log entry holding `key`."""
    return [(h[x], h[key]) for h in log_history if key in h and x in h]


def save_causal_model(trainer: Any, tokenizer: Any, output_dir: Path, lora: bool, merge: bool = True) -> None:
    """Write a folder that `spacy_recot.HFCausal.v2` loads as it is. Every rank
    calls it: `save_model` gathers the weights that DeepSpeed ZeRO-3 spread over
    the ranks. A LoRA adapter is saved under `adapter/` and, on rank 0 and with
    `merge`, merged into the base weights (without `merge` the folder holds the
    adapter and the tokenizer: `spacy_recot.HFCausal.v3`'s `adapter` takes
    `adapter/`); the end of turn joins the stop tokens."""
    from transformers import GenerationConfig

    output_dir = Path(output_dir)
    trainer.save_model(str(output_dir / "adapter" if lora else output_dir))
    if not trainer.is_world_process_zero():
        return
    if lora and merge:
        from peft import AutoPeftModelForCausalLM

        merged = AutoPeftModelForCausalLM.from_pretrained(str(output_dir / "adapter")).merge_and_unload()
        merged.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    try:
        generation = GenerationConfig.from_pretrained(output_dir)
    except OSError:
        generation = GenerationConfig()
    stop = tokenizer.convert_tokens_to_ids(end_of_turn(tokenizer))
    eos = generation.eos_token_id
    eos = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
    if stop not in eos:
        generation.eos_token_id = eos + [stop]
    generation.pad_token_id = tokenizer.pad_token_id
    generation.save_pretrained(output_dir)


def training_prompt(name: str) -> Any:
    """The prompt a TRL script's --prompt names (`prompts.TRAINING_PROMPTS`),
    with its defaults: what the trained model will be asked at inference."""
    from spacy.util import registry

    from .tasks import TRAINING_PROMPTS

    if name not in TRAINING_PROMPTS:
        raise ValueError(f"--prompt must be one of {sorted(TRAINING_PROMPTS)}, not {name!r}")
    return registry.misc.get(TRAINING_PROMPTS[name])()


def load_causal_lm(model: str) -> Tuple[Any, bool]:
    """The causal model to train, and whether it trains in bfloat16: on a GPU
    that has it; float32 elsewhere (on a CPU too)."""
    import torch
    from transformers import AutoModelForCausalLM

    from .backends import load_pretrained

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return load_pretrained(AutoModelForCausalLM, model, dtype=torch.bfloat16 if bf16 else torch.float32), bf16


def trainer_arguments(
    output_dir: Path,
    *,
    lr: float,
    scheduler: str,
    warmup: float,
    epochs: float,
    max_steps: int,
    batch_size: int,
    grad_accum: int,
    bf16: bool,
    seed: int,
    deepspeed: Optional[Path],
    gradient_checkpointing: Optional[bool] = None,
) -> Dict[str, Any]:
    """The settings SFTConfig and GRPOConfig take alike in the TRL scripts: the
    schedule, the batch, the precision, gradient checkpointing (None: on a GPU
    only), a log line per step, the two last checkpoints, no reporting."""
    import torch

    if gradient_checkpointing is None:
        gradient_checkpointing = torch.cuda.is_available()

    return {
        "output_dir": str(output_dir),
        "learning_rate": lr,
        "lr_scheduler_type": scheduler,
        "warmup_steps": warmup,
        "num_train_epochs": epochs,
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "gradient_accumulation_steps": grad_accum,
        "bf16": bf16,
        "use_cpu": not torch.cuda.is_available(),
        "gradient_checkpointing": gradient_checkpointing,
        "logging_steps": 1,
        "save_total_limit": 2,
        "report_to": [],
        "seed": seed,
        "deepspeed": str(deepspeed) if deepspeed else None,
    }


def train_and_save(trainer: Any, tokenizer: Any, output_dir: Path, *, resume: bool, lora: bool, merge: bool) -> float:
    """Train (from the last checkpoint with `resume`) and save the causal model
    (`save_causal_model`); the seconds this process trained."""
    start = time.perf_counter()
    train_resuming(trainer, output_dir, resume)
    seconds = time.perf_counter() - start
    save_causal_model(trainer, tokenizer, output_dir, lora, merge=merge)
    return seconds


def write_training_log(output_dir: Path, summary: Dict[str, Any]) -> None:
    """A run's summary as `training_log.json` in its output folder, and the base
    model's license file beside the weights (a trained model is under its base
    model's license; `init-pipeline` and `spacy package` take it from there)."""
    (Path(output_dir) / "training_log.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    base = summary.get("model")
    found = license_file(base) if isinstance(base, str) else None
    if found is not None and not (Path(output_dir) / found.name).exists():
        shutil.copyfile(found, Path(output_dir) / found.name)
