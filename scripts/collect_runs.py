"""Collect the dev metrics of training runs into one table (the ablations).

    python scripts/collect_runs.py training --output metrics/ablations.md

Reads every RUN/training_log.json below the folder (written by
training/train_seq2seq.py) and writes a Markdown table and a JSON file beside it:
run, prompt, loss, alpha, beta, best epoch's dev precision/recall/F1.
"""

import json
from pathlib import Path
from typing import Any, Dict, List

import typer


def collect(folder: Path) -> List[Dict[str, Any]]:
    """One row per run: its settings and its best dev epoch."""
    rows = []
    for log in sorted(folder.glob("*/training_log.json")):
        info = json.loads(log.read_text(encoding="utf-8"))
        epochs = info.get("epochs", [])
        best = max(epochs, key=lambda r: r.get("f1", -1.0)) if epochs else {}
        rows.append(
            {
                "run": log.parent.name,
                "prompt": info.get("prompt"),
                "loss": info.get("loss"),
                "alpha": info.get("alpha"),
                "beta": info.get("beta"),
                "best_epoch": best.get("epoch"),
                "precision": best.get("precision"),
                "recall": best.get("recall"),
                "f1": best.get("f1"),
            }
        )
    return rows


def to_markdown(rows: List[Dict[str, Any]]) -> str:
    """The rows as a Markdown table (scores in percent)."""

    def pct(x: Any) -> str:
        return f"{100 * x:.2f}" if isinstance(x, (int, float)) else "-"

    lines = [
        "| run | prompt | loss | alpha | beta | best epoch | dev P | dev R | dev F1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        alpha, beta = (r["alpha"], r["beta"]) if r["loss"] == "rcloss" else ("-", "-")
        lines.append(
            f"| {r['run']} | {r['prompt']} | {r['loss']} | {alpha} | {beta} | {r['best_epoch']} | "
            f"{pct(r['precision'])} | {pct(r['recall'])} | {pct(r['f1'])} |"
        )
    return "\n".join(lines) + "\n"


def main(
    folder: Path = typer.Argument(..., help="The folder of training runs (training/)."),
    output: Path = typer.Option(Path("metrics/ablations.md"), "--output", "-o"),
) -> None:
    """Write the table of every run below FOLDER (Markdown and JSON)."""
    rows = collect(folder)
    if not rows:
        raise typer.BadParameter(f"no */training_log.json below {folder}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(to_markdown(rows), encoding="utf-8")
    output.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    typer.echo(to_markdown(rows))
    typer.echo(f"Wrote {output} and {output.with_suffix('.json')}")


if __name__ == "__main__":
    typer.run(main)
