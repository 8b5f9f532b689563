"""Does the GRPO loop learn? A short run on a tiny model with a task it can improve.

Eight short real passages of the Pile-NER sample (open label sets: publisher,
date, ...), a tiny Qwen3 built from a config with a tokenizer trained on them,
a brief SFT on the JSON answers (without chains) so that it writes the format
some of the time, then GRPO with the package's rewards on the same prompts
(`training/train_grpo.py`, transformers' generate on the CPU). The mean reward
per step is logged and plotted; the result compares the first and last steps.

    python benchmarks/grpo_learns.py --output benchmarks/results/grpo_learns.json
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import typer
from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data" / "pile-ner-sample" / "sample_data.json"


def run(cmd: list) -> None:
    done = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed:\n{done.stderr[-3000:]}")


def sampled_reward(model_dir: Path, data: Path, samples: int, seed: int) -> dict:
    """Mean rewards of `samples` completions per record (temperature 1, no top-k:
    as GRPO samples them), through
    the component's backend and the training rewards: a fixed before/after test."""
    import torch

    from spacy_recot.backends import make_hf_causal_v2
    from spacy_recot.chunks import Chunk, Request
    from spacy_recot.cot_data import chat_example
    from spacy_recot.jsonl import load_jsonl
    from spacy_recot.rewards import f1_reward, schema_reward

    torch.manual_seed(seed)
    backend = make_hf_causal_v2(
        str(model_dir), max_new_tokens=96, generation={"do_sample": True, "temperature": 1.0, "top_k": 0}
    )
    rows = [chat_example(r) for r in load_jsonl(data)] * samples
    answers = backend([Request(r["prompt"][0]["content"], Chunk.from_text(r["sentence"])) for r in rows])
    f1 = f1_reward(answers, [r["entities"] for r in rows], [r["schema"] for r in rows], [r["sentence"] for r in rows])
    schema = schema_reward(answers, [r["schema"] for r in rows])
    n = len(rows)
    return {"f1": sum(f1) / n, "schema": sum(schema) / n, "reward": (10 * sum(f1) + sum(schema)) / n, "completions": n}


def main(
    output: Path = typer.Option(ROOT / "benchmarks" / "results" / "grpo_learns.json", "--output", "-o"),
    n_records: int = typer.Option(8, "--records"),
    sft_steps: int = typer.Option(200, "--sft-steps"),
    grpo_steps: int = typer.Option(120, "--grpo-steps"),
    lr: float = typer.Option(3e-4, "--lr"),
    samples: int = typer.Option(24, "--samples", help="Completions per record in the before/after test."),
    beta: float = typer.Option(0.04, "--beta"),
    loss_type: str = typer.Option("grpo", "--loss-type"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    from spacy_recot import cot_data as cd

    records = [r for r in cd.read_labelled(DATA) if len(r["sentence"].split()) <= 20][:n_records]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "records.jsonl"
        data.write_text("".join(json.dumps({**r, "entities": r["gold"], "cot": ""}) + "\n" for r in records))
        run(
            [
                "-m",
                "spacy_recot",
                "tiny-qwen3",
                str(tmp_path / "base"),
                str(data),
                "--vocab-size",
                "600",
                "--seed",
                str(seed),
            ]
        )
        run(
            [
                "training/train_sft.py",
                str(data),
                "--model",
                str(tmp_path / "base"),
                "--output-dir",
                str(tmp_path / "sft"),
                "--no-cot",
                "--max-steps",
                str(sft_steps),
                "--lr",
                "3e-3",
                "--batch-size",
                "4",
                "--warmup",
                "0",
                "--seed",
                str(seed),
            ]
        )
        run(
            [
                "training/train_grpo.py",
                str(data),
                "--model",
                str(tmp_path / "sft"),
                "--output-dir",
                str(tmp_path / "grpo"),
                "--num-generations",
                "8",
                "--batch-size",
                "16",
                "--grad-accum",
                "1",
                "--max-completion-length",
                "96",
                "--max-steps",
                str(grpo_steps),
                "--lr",
                str(lr),
                "--warmup",
                "0",
                "--scheduler",
                "constant",
                "--beta",
                str(beta),
                "--temperature",
                "1.0",
                "--num-iterations",
                "1",
                "--seed",
                str(seed),
                "--save-steps",
                "1000",
            ]
        )
        log = json.loads((tmp_path / "grpo" / "training_log.json").read_text())
        before = sampled_reward(tmp_path / "sft", data, samples, seed)
        after = sampled_reward(tmp_path / "grpo", data, samples, seed)
        (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
        png = output.with_suffix(".png")
        png.write_bytes((tmp_path / "grpo" / "reward_curve.png").read_bytes())
    steps = log["steps"]
    rewards = [s["reward"] for s in steps]
    k = max(1, len(rewards) // 6)
    result = {
        "records": len(records),
        "sft_steps": sft_steps,
        "lr": lr,
        "beta": beta,
        "loss_type": loss_type,
        "grpo_steps": len(steps),
        # Means over windows of a sixth of the steps (each step samples other prompts).
        "mean_reward_by_window": [sum(rewards[i : i + k]) / len(rewards[i : i + k]) for i in range(0, len(rewards), k)],
        "f1_by_window": [
            sum(s.get("rewards/f1_reward/mean", 0) for s in steps[i : i + k]) / len(steps[i : i + k])
            for i in range(0, len(steps), k)
        ],
        "schema_by_window": [
            sum(s.get("rewards/schema_reward/mean", 0) for s in steps[i : i + k]) / len(steps[i : i + k])
            for i in range(0, len(steps), k)
        ],
        "sampled_before_grpo": before,
        "sampled_after_grpo": after,
        "steps": steps,
        "plot": str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png),
    }
    write_results(output, result)
    typer.echo(f"sampled reward (max 11) before GRPO {before['reward']:.2f}, after {after['reward']:.2f}")
    typer.echo(
        "mean reward per window of steps (max 11): " + ", ".join(f"{r:.2f}" for r in result["mean_reward_by_window"])
    )


if __name__ == "__main__":
    typer.run(main)
