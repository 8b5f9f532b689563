"""GRPO for ReasoningNER with TRL's GRPOTrainer and the package's rewards.

    python training/train_grpo.py corpus/grpo.jsonl --model training/sft --output-dir training/grpo

The data is a sample from `python -m spacy_recot grpo-sample` (sentence, schema,
entities). Each row becomes ReasoningNER's prompt as the user turn of the
model's chat template; completions are scored by
`spacy_recot.rewards.f1_reward` and `spacy_recot.rewards.schema_reward`, which
read answers exactly as the component does, weighted 10 : 1.

The defaults are the reference recipe (HuiResearch/ReasoningIE,
config/grpo/qwen3-*.yaml), checked against TRL 1.16: num_generations 16,
temperature 0.9, beta 0.04, epsilon 0.2, epsilon_high 0.28, num_iterations 4,
loss_type dr_grpo, lr 1e-6, 1 epoch, completions up to 4096 tokens. TRL
removed `max_prompt_length`: prompts longer than `--max-prompt-tokens` are
left out of the data instead (counted). Generation runs on vLLM when it is
installed and a GPU is present (`--vllm server` with `trl vllm-serve` on its
own GPU, or `colocate`), else with transformers' `generate`.
"""

import functools
import importlib.util
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from spacy_recot import training as t

VLLM_MODES = ("auto", "off", "server", "colocate")


def read_sample(path: Path, limit: int = 0) -> List[Dict[str, Any]]:
    """Rows of a GRPO sample (JSON lines with sentence, schema, entities)."""
    from spacy_recot import cot_data as cd
    from spacy_recot.jsonl import JsonlError, read_jsonl

    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist")
    rows = []
    try:
        for number, row in read_jsonl(path):
            if limit and len(rows) == limit:
                break
            if not isinstance(row.get("sentence"), str) or "schema" not in row:
                raise typer.BadParameter(f"{path}:{number}: expected sentence, schema and entities")
            row["entities"] = cd.entity_list(row.get("entities"))
            row["schema"] = cd.schema_list(row["schema"])
            rows.append(row)
    except JsonlError as err:
        raise typer.BadParameter(str(err)) from None
    return rows


def prompt_rows(rows: List[Dict[str, Any]], tokenizer: Any, max_prompt_tokens: int, prompt: Any = None) -> tuple:
    """Conversational prompts (ReasoningNER's prompt, or `prompt`, as the user
    turn) with the reward columns; rows whose prompt exceeds `max_prompt_tokens`
    are left out."""
    from spacy_recot.cot_data import chat_example

    out, too_long = [], 0
    for row in rows:
        example = chat_example(row, prompt)
        example.pop("completion")
        text = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) > max_prompt_tokens:
            too_long += 1
            continue
        out.append(example)
    return out, too_long


def use_vllm(mode: str, server_url: Optional[str] = None) -> Optional[str]:
    """The vLLM mode to use, or None for transformers' generate."""
    if mode not in VLLM_MODES:
        raise typer.BadParameter(f"--vllm must be one of {VLLM_MODES}, not {mode!r}")
    if mode == "off":
        return None
    import torch

    available = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if mode == "auto":
        # A server needs starting (trl vllm-serve): only when its URL is given.
        return ("server" if server_url else "colocate") if available else None
    if not available:
        raise typer.BadParameter(f"--vllm {mode} needs vllm installed and a GPU")
    return mode


def train(
    data: Path = typer.Argument(..., help="A GRPO sample (python -m spacy_recot grpo-sample)."),
    model: str = typer.Option(
        ..., "--model", "-m", help="The CoT-tuned model (train_sft.py's output) or any chat model."
    ),
    output_dir: Path = t.OUTPUT_DIR_OPTION,
    num_generations: int = typer.Option(16, "--num-generations"),
    max_completion_length: int = typer.Option(4096, "--max-completion-length"),
    max_prompt_tokens: int = typer.Option(
        2048, "--max-prompt-tokens", help="Rows with longer prompts are left out (TRL no longer truncates prompts)."
    ),
    temperature: float = typer.Option(0.9, "--temperature"),
    beta: float = typer.Option(0.04, "--beta", help="KL to the reference policy."),
    epsilon: float = typer.Option(0.2, "--epsilon"),
    epsilon_high: float = typer.Option(0.28, "--epsilon-high"),
    num_iterations: int = typer.Option(4, "--num-iterations"),
    loss_type: str = typer.Option("dr_grpo", "--loss-type"),
    lr: float = typer.Option(1e-6, "--lr"),
    scheduler: str = typer.Option("cosine", "--scheduler"),
    warmup: float = typer.Option(0.1, "--warmup"),
    epochs: float = typer.Option(1.0, "--epochs"),
    max_steps: int = typer.Option(-1, "--max-steps"),
    batch_size: int = typer.Option(
        16, "--batch-size", help="Completions per device and step; generation batches must hold whole groups."
    ),
    grad_accum: int = typer.Option(4, "--grad-accum"),
    f1_weight: float = typer.Option(10.0, "--f1-weight"),
    schema_weight: float = typer.Option(1.0, "--schema-weight"),
    empty_gold_reward: float = typer.Option(
        1.0, "--empty-gold-reward", help="F1 reward when gold and answer are both empty (ReasoningNER's reference: 0)."
    ),
    vllm: str = typer.Option(
        "auto",
        "--vllm",
        help="auto (with vllm and a GPU: server when --vllm-server-url is given, else colocate), off, server, colocate.",
    ),
    vllm_server_url: Optional[str] = typer.Option(
        None, "--vllm-server-url", help="e.g. http://127.0.0.1:8000 (trl vllm-serve)."
    ),
    lora: bool = t.LORA_OPTION,
    lora_r: int = t.LORA_R_OPTION,
    lora_alpha: int = t.LORA_ALPHA_OPTION,
    adapter: Optional[Path] = typer.Option(
        None,
        "--adapter",
        help="A LoRA adapter (train_sft.py --lora's adapter/) merged into --model first: the policy and the KL reference start there.",
    ),
    merge: bool = t.MERGE_OPTION,
    prompt_name: str = t.PROMPT_OPTION,
    deepspeed: Optional[Path] = t.DEEPSPEED_OPTION,
    resume: bool = t.RESUME_OPTION,
    limit: int = typer.Option(0, "--limit", help="Only the first N rows."),
    save_steps: int = typer.Option(50, "--save-steps"),
    seed: int = t.SEED_OPTION,
    gradient_checkpointing: Optional[bool] = t.CHECKPOINTING_OPTION,
    local_rank: int = t.LOCAL_RANK_OPTION,
) -> None:
    """GRPO with the composite reward 10 * F1 + 1 * schema validity."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from spacy_recot.rewards import f1_reward, schema_reward

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        prompt = t.training_prompt(prompt_name)
        t.prepare_deepspeed(deepspeed)
        # TRL wants GRPO prompts padded on the left.
        tokenizer = t.chat_tokenizer(model, padding_side="left")
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    rows, too_long = prompt_rows(read_sample(data, limit), tokenizer, max_prompt_tokens, prompt)
    if not rows:
        raise typer.BadParameter(f"No row of {data} has a prompt within --max-prompt-tokens {max_prompt_tokens}")
    mode = use_vllm(vllm, vllm_server_url)
    net, bf16 = t.load_causal_lm(model)
    if adapter is not None:
        from spacy_recot.adapters import merge_adapter
        from spacy_recot.errors import ModelLoadError

        try:
            merge_adapter(net, adapter)
        except ModelLoadError as err:
            raise typer.BadParameter(f"--adapter: {err}") from None
    peft_config = t.lora_config(lora_r, lora_alpha) if lora else None
    vllm_args: Dict[str, Any] = {"use_vllm": mode is not None}
    if mode is not None:
        vllm_args["vllm_mode"] = mode
        if vllm_server_url:
            vllm_args["vllm_server_base_url"] = vllm_server_url
    args = GRPOConfig(
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
        num_generations=num_generations,
        max_completion_length=max_completion_length,
        temperature=temperature,
        beta=beta,
        epsilon=epsilon,
        epsilon_high=epsilon_high,
        num_iterations=num_iterations,
        loss_type=loss_type,
        reward_weights=[f1_weight, schema_weight],
        save_steps=save_steps,
        **vllm_args,
    )
    f1 = functools.partial(f1_reward, empty_gold_reward=empty_gold_reward)
    trainer = GRPOTrainer(
        model=net,
        reward_funcs=[f1, schema_reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    seconds = t.train_and_save(trainer, tokenizer, output_dir, resume=resume, lora=lora, merge=merge)
    if trainer.is_world_process_zero():
        history = trainer.state.log_history
        keys = (
            "step",
            "reward",
            "reward_std",
            "rewards/f1_reward/mean",
            "rewards/schema_reward/mean",
            "kl",
            "loss",
            "completions/mean_length",
            "step_time",  # seconds: sampling, scoring and the passes of the step's micro-batches
        )
        summary = {
            "model": model,
            "adapter": str(adapter) if adapter else None,
            "prompt": prompt_name,
            "data": str(data),
            "rows": len(rows),
            "train_seconds_this_process": seconds,
            "left_out_long_prompts": too_long,
            "generation": "vllm-" + mode if mode else "transformers",
            "gradient_checkpointing": args.gradient_checkpointing,
            "steps": [{k: h[k] for k in keys if k in h} for h in history if "reward" in h],
        }
        t.write_training_log(output_dir, summary)
        t.plot_series(
            [
                ("mean reward", t.history_series(history, "reward")),
                ("F1 reward", t.history_series(history, "rewards/f1_reward/mean")),
                ("schema reward", t.history_series(history, "rewards/schema_reward/mean")),
            ],
            output_dir / "reward_curve.png",
            "step",
            "GRPO",
        )
        typer.echo(f"Saved the model to {output_dir} ({len(rows)} prompts, {too_long} left out as too long)")


if __name__ == "__main__":
    typer.run(train)
