"""Property run of the readers on random and adversarial answers (seeded).

A model's answer is untrusted input: for every answer, each reader must return
without an exception, and every span must lie inside the chunk, with an offered
label and start < end. Answers are drawn from generators that look like what
models really write (valid answers, truncated, re-spelled, mixed formats) and
from adversarial ones (deep nesting, huge and odd literals, control and
combining characters, tag-shaped words, runaway repeats). Writes a JSON summary.

    python benchmarks/fuzz_readers.py --n 100000 --output benchmarks/results/fuzz_readers.json
"""

import json
import random
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, List

import typer

from spacy_recot.chunks import Chunk
from spacy_recot.tasks import OUTPUT_FORMATS, read_answer

ROOT = Path(__file__).resolve().parents[1]

LABELS = ["person", "location", "programming language", "award"]
VOCAB = [
    "Barack",
    "Obama",
    "visited",
    "Paris",
    ".",
    ",",
    "(",
    ")",
    "New",
    "York",
    "İstanbul",
    "ß",
    "naïve",
    "C++",
    "R-CODE",
    "machine-learning",
    "{",
    "}",
    '"',
    "'",
    "\\",
    "O",
    "(O)",
    "B-person",
    "e\u0301",
    "\u200b",
    "日本",
    "🙂",
    "1999",
    "the",
    "of",
    "<think>",
    "</think>",
    "```",
]


def random_chunk(rng: random.Random) -> Chunk:
    n = rng.randint(1, 30)
    words = [rng.choice(VOCAB) for _ in range(n)]
    if rng.random() < 0.3:
        words = [w.lower() if rng.random() < 0.5 else w for w in words]
    return Chunk.from_words(words)


def _entity_strings(rng: random.Random, chunk: Chunk) -> List[str]:
    out = []
    for _ in range(rng.randint(0, 5)):
        s = rng.randrange(len(chunk.words))
        e = min(len(chunk.words), s + rng.randint(1, 4))
        text = chunk.slice_text(s, e)
        mutate = rng.random()
        if mutate < 0.15:
            text = text.lower()
        elif mutate < 0.25:
            text = text.replace(" ", "")
        elif mutate < 0.3:
            text = text + " extra"
        elif mutate < 0.35:
            text = "".join(rng.choice(VOCAB) for _ in range(3))
        out.append(text)
    return out


def _label(rng: random.Random) -> object:
    return rng.choice(LABELS + ["PERSON", "Location", "label1", "", "misc", None, 3, ["x"], {"a": 1}])


def valid_entities(rng: random.Random, chunk: Chunk) -> str:
    grouped: Dict[str, List[str]] = {}
    for text in _entity_strings(rng, chunk):
        grouped.setdefault(str(_label(rng)), []).append(text)
    answer = json.dumps({"entities": grouped}, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2]))
    if rng.random() < 0.4:
        answer = "<think>\n" + " ".join(rng.choice(VOCAB) for _ in range(rng.randint(0, 40))) + "\n</think>\n" + answer
    if rng.random() < 0.2:
        answer = "```json\n" + answer + "\n```"
    return answer


def valid_bio(rng: random.Random, chunk: Chunk) -> str:
    parts = []
    for word in chunk.words:
        tag = rng.choice(["O", "O", "O"] + [f"{p}-{_label(rng)}" for p in "BI"])
        parts.append(f"{word}({tag})")
    sep = rng.choice([" ", "", "  ", ", ", "\n"])
    return sep.join(parts)


def mutate(rng: random.Random, text: str) -> str:
    """Truncate, splice, duplicate or corrupt a text."""
    if not text:
        return text
    kind = rng.random()
    i = rng.randrange(len(text))
    if kind < 0.3:
        return text[:i]
    if kind < 0.45:
        return text[:i] + rng.choice(['"', "'", "{", "}", "[", "]", "(", ")", ",", ":", "\\", "\x00", "\n"]) + text[i:]
    if kind < 0.6:
        return text[:i] + text[i + rng.randint(1, 10) :]
    if kind < 0.7:
        return text.replace('"', "'")
    if kind < 0.8:
        return text * rng.randint(2, 5)
    return text[i:] + text[:i]


def adversarial(rng: random.Random, chunk: Chunk) -> str:
    depth = rng.randint(100, 5000)
    options: List[Callable[[], str]] = [
        lambda: "[" * depth + "]" * rng.randint(0, depth),
        lambda: '{"entities": ' * depth,
        lambda: "(" * depth + "B-person" + ")" * depth,
        lambda: "{'entities': {'person': [" + "9" * rng.randint(1, 5000) + "]}}",
        lambda: '{"entities": {"person": [1e999, NaN, Infinity, -0, true, null]}}',
        lambda: (
            "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(1, 200)))
            .encode("utf-8", "replace")
            .decode("utf-8", "replace")
        ),
        lambda: "<think>" * rng.randint(1, 50) + "</think>" * rng.randint(0, 50) + valid_entities(rng, chunk),
        lambda: "(O)" * rng.randint(1, 500),
        lambda: " ".join(f"{w}(B-{'x' * rng.randint(0, 300)})" for w in chunk.words),
        lambda: "{'entities': {'person': ['" + "\\" * rng.randint(1, 50) + "']}}",
        lambda: "```" * rng.randint(1, 30) + "json",
        lambda: '{"entities": {"person": ["' + chunk.text + '"]}}',
        lambda: "\x00\x01\x02" + valid_bio(rng, chunk),
        lambda: "f'{1}'" if rng.random() < 0.5 else "b'\\x00'",
        lambda: "{" + ", ".join(f"'{i}': [{i}]" for i in range(rng.randint(1, 2000))) + "}",
    ]
    return rng.choice(options)()


def draw(rng: random.Random, chunk: Chunk) -> str:
    roll = rng.random()
    if roll < 0.3:
        return valid_entities(rng, chunk) if rng.random() < 0.5 else valid_bio(rng, chunk)
    if roll < 0.6:
        base = valid_entities(rng, chunk) if rng.random() < 0.5 else valid_bio(rng, chunk)
        for _ in range(rng.randint(1, 3)):
            base = mutate(rng, base)
        return base
    if roll < 0.8:
        return adversarial(rng, chunk)
    return "".join(
        rng.choice(VOCAB + [" ", "(", ")", "{", "}", '"', ":", ",", "[", "]"]) for _ in range(rng.randint(0, 120))
    )


def run(n: int, seed: int = 0) -> Dict[str, object]:
    """Read `n` answers with each reader; return the summary (failures listed)."""
    rng = random.Random(seed)
    summary: Dict[str, object] = {"n_per_format": n, "seed": seed}
    for fmt in OUTPUT_FORMATS:
        failures: List[Dict[str, str]] = []
        counts: Counter = Counter()
        spans = 0
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(n):
                chunk = random_chunk(rng)
                answer = draw(rng, chunk)
                try:
                    reading = read_answer(fmt, chunk, answer, LABELS)
                except Exception:  # noqa: BLE001 - what this run is looking for
                    failures.append({"answer": answer[:300], "error": traceback.format_exc(limit=3)[-600:]})
                    continue
                counts.update(reading.counts)
                for s, e, label in reading.spans:
                    spans += 1
                    if not (chunk.start_char <= s < e <= chunk.end_char) or label not in LABELS:
                        failures.append({"answer": answer[:300], "error": f"invalid span {(s, e, label)}"})
        summary[fmt] = {
            "answers": n,
            "exceptions_or_invalid_spans": len(failures),
            "warnings": len(caught),
            "spans": spans,
            "seconds": round(time.perf_counter() - start, 2),
            "counts": dict(counts.most_common()),
            "failures": failures[:20],
        }
    return summary


def main(
    n: int = typer.Option(100000, "--n", help="Answers per output format."),
    seed: int = typer.Option(0, "--seed"),
    output: Path = typer.Option(ROOT / "benchmarks" / "results" / "fuzz_readers.json", "--output", "-o"),
) -> None:
    # Here, not at the top: tests import this file as benchmarks.fuzz_readers, without
    # benchmarks/ on sys.path (run as a script, it is).
    from results_io import write_results

    summary = run(n, seed)
    write_results(output, summary)
    for fmt in OUTPUT_FORMATS:
        res = summary[fmt]
        typer.echo(
            f"{fmt}: {res['answers']} answers, {res['exceptions_or_invalid_spans']} failures, {res['warnings']} warnings, {res['seconds']} s"
        )
    if any(summary[fmt]["exceptions_or_invalid_spans"] or summary[fmt]["warnings"] for fmt in OUTPUT_FORMATS):
        raise typer.Exit(code=1)


if __name__ == "__main__":
    typer.run(main)
