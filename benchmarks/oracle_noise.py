"""What each kind of model slip costs: the oracle backend with noise, on real data.

For every converted test set and both output formats, runs the component with
the oracle backend clean and with each noise mode applied to every sentence,
and records spaCy's exact-span F, the papers' normalized F and the parser's
repair counts. Writes JSON.

    python benchmarks/oracle_noise.py corpus/gner --output benchmarks/results/oracle_noise.json
"""

import platform
import time
from pathlib import Path
from typing import Dict, List

import spacy
import typer
from results_io import write_results

from spacy_recot.conll import read_labels
from spacy_recot.evaluation import evaluate_dataset, read_examples
from spacy_recot.metrics import average_f
from spacy_recot.testing.oracle import NOISE_MODES

PROMPTS = {"bio": "spacy_recot.GNERPrompt.v1", "entities": "spacy_recot.EntityListPrompt.v1"}


def run(gold: Path, output_format: str, noise: Dict[str, float]) -> Dict:
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "recot_ner",
        config={
            "labels": read_labels(gold),
            "prompt": {"@misc": PROMPTS[output_format]},
            "model": {
                "@misc": "spacy_recot.Oracle.v1",
                "gold": str(gold),
                "output_format": output_format,
                "noise": noise,
            },
        },
    )
    res = evaluate_dataset(nlp, read_examples(nlp, gold), "recot_ner", batch_size=32)
    return {
        "ents_f": res["ents_f"],
        "normalized_f": res["normalized"]["f"],
        "counts": res["counts"],
        "n_docs": res["n_docs"],
        "seconds": res["seconds"],
    }


def main(
    data: Path = typer.Argument(..., help="Folder of converted sets: <set>/test.spacy"),
    output: Path = typer.Option(Path("benchmarks/results/oracle_noise.json"), "--output", "-o"),
) -> None:
    sets: List[Path] = sorted(data.glob("*/test.spacy"))
    if not sets:
        raise typer.BadParameter(f"no */test.spacy below {data}; run the convert command first")
    modes = ["clean"] + list(NOISE_MODES)
    results: Dict = {"machine": platform.platform(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": {}}
    for fmt in PROMPTS:
        for mode in modes:
            noise = {} if mode == "clean" else {mode: 1.0}
            per_set = {path.parent.name: run(path, fmt, noise) for path in sets}
            avg_f = average_f(per_set, "ents_f")
            avg_norm = average_f(per_set, "normalized_f")
            results["runs"][f"{fmt}/{mode}"] = {
                "average_ents_f": avg_f,
                "average_normalized_f": avg_norm,
                "datasets": per_set,
            }
            typer.echo(f"{fmt:<9} {mode:<14} exact F {avg_f * 100:6.2f}   normalized F {avg_norm * 100:6.2f}")
    write_results(output, results)


if __name__ == "__main__":
    typer.run(main)
