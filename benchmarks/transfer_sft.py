"""LoRA tuning of the packaged real model, scored on a domain it never saw.

(b) CoT-tuning path: records from four CrossNER domains' train sets (ai,
    literature, music, science; `--per-domain` each) as ReasoningNER answers
    (JSON; the records carry no chain: none was generated for them, see the
    README), LoRA SFT of Qwen2.5-Coder-0.5B-Instruct, scored on the first
    `--test` sentences of CrossNER politics' test set before and after, with
    ReasoningNER's prompt under the grammar.
(c) RCLoss against cross-entropy: the same records written as BIO (ReCoT's
    prompt, every word with its tag), one LoRA run with each loss, scored on the
    same politics sentences (free decoding: the BIO reader aligns the words).

Everything runs through the project's own scripts and the component
(`training/train_sft.py`, `python -m spacy_recot evaluate`); bfloat16 at
inference for speed (the same for every row). Writes JSON.

    python benchmarks/transfer_sft.py --output benchmarks/results/transfer_sft.json
"""

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import typer
from results_io import write_results

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data" / "crossner"
TRAIN_DOMAINS = ("ai", "literature", "music", "science")
HELD_OUT = "politics"


def run(cmd: List[str]) -> str:
    done = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def evaluate(name: str, model_dir: str, prompt: str, constrained: bool, test: Path, n: int) -> Dict[str, Any]:
    """Score the component with this model and prompt on the first `n` test
    sentences (their own words, as the papers do), in this process."""
    import gc

    import spacy

    from spacy_recot.conll import read_labels
    from spacy_recot.evaluation import evaluate_dataset, read_examples

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "recot_ner",
        config={
            "labels": read_labels(test),
            "model": {
                "@misc": "spacy_recot.HFCausal.v2",
                "name_or_path": model_dir,
                "dtype": "bfloat16",
                "constrained": constrained,
                "max_new_tokens": 384,
            },
            "prompt": {"@misc": prompt},
            "batch_size": 8,
        },
    )
    start = time.perf_counter()
    res = evaluate_dataset(nlp, read_examples(nlp, test, limit=n), "recot_ner")
    del nlp
    gc.collect()
    typer.echo(f"{name}: exact F {res['ents_f']:.3f}, normalized F {res['normalized']['f']:.3f}")
    return {
        "exact_p": res["ents_p"],
        "exact_r": res["ents_r"],
        "exact_f": res["ents_f"],
        "normalized": res["normalized"],
        "counts": res["counts"],
        "seconds": time.perf_counter() - start,
    }


def main(
    output: Path = typer.Option(ROOT / "benchmarks" / "results" / "transfer_sft.json", "--output", "-o"),
    work: Path = typer.Option(Path("/tmp/transfer_sft"), "--work", help="Scratch folder (models are 2 GB each)."),
    per_domain: int = typer.Option(20, "--per-domain"),
    test: int = typer.Option(50, "--test", help="Sentences of the held-out test set."),
    lr: float = typer.Option(2e-4, "--lr"),
    epochs: float = typer.Option(1.0, "--epochs"),
    parts: str = typer.Option("b,c", "--parts"),
) -> None:
    from spacy_recot import cot_data as cd
    from spacy_recot.backends.packaged import materialize

    base = str(materialize("qwen2.5-coder-0.5b-instruct"))
    work.mkdir(parents=True, exist_ok=True)
    label_map = str(ROOT / "configs" / "label_maps" / "crossner.json")
    records = []
    for domain in TRAIN_DOMAINS:
        target = work / "corpus" / domain / "train.spacy"
        run(["-m", "spacy_recot", "convert", str(DATA / domain / "train.txt"), str(target), "--label-map", label_map])
        records += cd.read_training_records(target, limit=per_domain)
    data = work / "records.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    test_set = work / "corpus" / HELD_OUT / "test.spacy"
    run(["-m", "spacy_recot", "convert", str(DATA / HELD_OUT / "test.txt"), str(test_set), "--label-map", label_map])
    result: Dict[str, Any] = {
        "model": "qwen2.5-coder-0.5b-instruct (packaged)",
        "train": {
            "domains": list(TRAIN_DOMAINS),
            "records": len(records),
            "chains": "none (JSON answers only)",
            "lr": lr,
            "epochs": epochs,
            "lora_r": 16,
        },
        "test": {"set": f"crossner_{HELD_OUT} test", "sentences": test},
        "runs": {},
    }
    sft = [
        "training/train_sft.py",
        str(data),
        "--model",
        base,
        "--lora",
        "--lr",
        str(lr),
        "--epochs",
        str(epochs),
        "--batch-size",
        "2",
        "--warmup",
        "0.03",
        "--max-length",
        "2048",
    ]

    def timed_train(out: Path, extra: List[str]) -> float:
        start = time.perf_counter()
        if not (out / "model.safetensors").exists():
            run(sft + ["--output-dir", str(out)] + extra)
        return time.perf_counter() - start

    if "b" in parts:
        verbatim = "spacy_recot.ReasoningNERPrompt.v1"
        result["runs"]["json_before"] = evaluate("json_before", base, verbatim, True, test_set, test)
        seconds = timed_train(work / "sft_json", ["--no-cot"])
        after = evaluate("json_after", str(work / "sft_json"), verbatim, True, test_set, test)
        result["runs"]["json_after"] = {**after, "train_seconds": seconds}
        write_results(output, result)
    if "c" in parts:
        recot = "spacy_recot.ReCoTPrompt.v1"
        result["runs"]["bio_before"] = evaluate("bio_before", base, recot, False, test_set, test)
        for loss in ("ce", "rcloss"):
            seconds = timed_train(work / f"sft_bio_{loss}", ["--format", "bio", "--loss", loss])
            res = evaluate(f"bio_{loss}", str(work / f"sft_bio_{loss}"), recot, False, test_set, test)
            result["runs"][f"bio_{loss}"] = {**res, "train_seconds": seconds}
            write_results(output, result)
    write_results(output, result)
    for name, res in result["runs"].items():
        typer.echo(
            f"{name}: exact P {res['exact_p']:.3f} R {res['exact_r']:.3f} F {res['exact_f']:.3f}  normalized F {res['normalized']['f']:.3f}"
        )


if __name__ == "__main__":
    typer.run(main)
