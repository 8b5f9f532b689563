"""Time to read huge answers, per kind and size (a server may ignore max_tokens).

Each kind of answer repeats one pattern up to the size: an entity list naming
one entity over and over (whole, or cut inside a string), the same key over and
over, entities not in the text, a chunk of one repeated word, BIO output, a
rationale of abbreviations, fenced blocks; and the component's per-answer work
besides the reader (scores from a token per character, the rationale's
sentences). Reading must take time linear in the size: the doubling ratios in
the summary stay near 2 (fastest of 3 runs each).

    python benchmarks/huge_answers.py --output benchmarks/results/huge_answers.json
"""

import json
import time
from pathlib import Path
from typing import Callable, Dict, List

import typer
from results_io import machine, write_results

from spacy_recot.answers import Answer
from spacy_recot.chunks import Chunk
from spacy_recot.tasks import read_answer
from spacy_recot.tasks.confidence import entity_scores
from spacy_recot.tasks.think import rationale_sentences

ROOT = Path(__file__).resolve().parents[1]

LABELS = ["person"]
CHUNK = Chunk.from_words("Barack Obama visited Paris .".split())
SAME_WORD = Chunk.from_words(["the"] * 200)


def fill(unit: str, size: int) -> str:
    return unit * max(size // len(unit), 1)


def kinds(size: int) -> Dict[str, Callable[[], object]]:
    """What is timed for answers of about `size` characters."""
    listed = '{"entities": {"person": [' + fill('"Obama", ', size)[:-2] + "]}}"
    scored = Answer.scored(listed, [(i, i + 1, -0.1) for i in range(len(listed))])
    entities = [("Obama", "person")] * 300 + [("Nobody", "person")] * 300
    answers = {
        "one entity repeated": (CHUNK, "entities", listed),
        "one entity repeated, cut in a string": (CHUNK, "entities", listed[:-4]),
        "one key repeated": (CHUNK, "entities", "{" + fill('"person": ["Obama"], ', size)[:-2] + "}"),
        "entities not in the text": (
            CHUNK,
            "entities",
            json.dumps({"person": [f"x{i}" for i in range(size // 10)]}),
        ),
        "a repeated word's chunk": (SAME_WORD, "entities", json.dumps({"person": ["the"] * (size // 8)})),
        "BIO, one word repeated": (CHUNK, "bio", fill("Obama(B-person) ", size)),
        "BIO, a repeated word's chunk": (SAME_WORD, "bio", fill("the(O) ", size)),
        "a rationale of abbreviations": (
            CHUNK,
            "entities",
            "<think>" + fill("Mr. ", size) + '</think>{"person": ["Obama"]}',
        ),
        "fenced blocks": (CHUNK, "entities", fill('```json\n{"person": ["Obama"]}\n``` ', size)),
    }
    timed: Dict[str, Callable[[], object]] = {
        name: (lambda c=c, f=f, a=a: read_answer(f, c, a, LABELS)) for name, (c, f, a) in answers.items()
    }
    timed["scores, a token per character"] = lambda: entity_scores(scored, entities)
    timed["rationale sentences"] = lambda: rationale_sentences(fill("Mr. ", size))
    return timed


def run(sizes: List[int], repeats: int = 3) -> Dict[str, object]:
    """The fastest of `repeats` runs of each kind at each size, in seconds."""
    seconds: Dict[str, Dict[str, float]] = {}
    for size in sizes:
        for name, fn in kinds(size).items():
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - start)
            seconds.setdefault(name, {})[str(size)] = round(best, 4)
    ratios = {
        name: [round(by_size[str(b)] / max(by_size[str(a)], 1e-4), 2) for a, b in zip(sizes, sizes[1:])]
        for name, by_size in seconds.items()
    }
    return {"sizes": sizes, "repeats": repeats, "seconds": seconds, "ratio_per_doubling": ratios, **machine()}


def main(
    output: Path = typer.Option(ROOT / "benchmarks" / "results" / "huge_answers.json", "--output", "-o"),
    largest: int = typer.Option(1 << 20, "--largest", help="The largest answer, in characters."),
) -> None:
    sizes = [largest // 4, largest // 2, largest]
    results = run(sizes)
    write_results(output, results)
    for name, by_size in results["seconds"].items():
        typer.echo(f"{name}: " + ", ".join(f"{size} chars {s:.2f} s" for size, s in by_size.items()))


if __name__ == "__main__":
    typer.run(main)
