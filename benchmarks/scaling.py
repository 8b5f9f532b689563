"""Scaling out, measured side by side in one run (medians of --runs runs):

- annotate: `python -m spacy_recot annotate` in one process against Ray Data
  with 1 and 2 actors (a local Ray instance, one CPU per actor), on the same
  JSONL input and the same pipeline (the default settings on the packaged 0.5B
  model, with the set's labels);
  Ray's start is timed once, apart; each run starts its actors (model loading
  included). Outputs are compared shard by shard.
- server: the OpenAI-compatible backend against vLLM's CPU build (one thread,
  bfloat16) serving the same packaged Qwen2.5-Coder-0.5B, against the
  in-process default backend (one thread, bfloat16), both constrained, the
  component's batch size 16 (16 requests in flight for the server). The
  server's start is timed apart; the in-process runs happen with the server
  stopped. Answers are compared (greedy decoding on both sides).

    OMP_NUM_THREADS=1 python benchmarks/scaling.py corpus/gner/crossner_ai --output benchmarks/results/scaling.json
"""

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import spacy
import typer
from results_io import write_results

from spacy_recot.backends.packaged import FAST_PACKAGED
from spacy_recot.conll import read_labels
from spacy_recot.corpus import annotate
from spacy_recot.evaluation import read_examples

app = typer.Typer(add_completion=False)


# The model these figures were taken with (and the one the vLLM server serves):
# the default settings on the packaged 0.5B model.
FAST_MODEL = {"@misc": "spacy_recot.PackagedCausal.v3", "name": FAST_PACKAGED}


def default_nlp(labels: List[str], model: Dict[str, Any] = None):
    nlp = spacy.blank("en")
    config: Dict[str, Any] = {"labels": labels, "store_io": True, "model": model or FAST_MODEL}
    nlp.add_pipe("recot_ner", config=config)
    return nlp


def ents(doc) -> List[List[Any]]:
    return [[e.start_char, e.end_char, e.label_] for e in doc.ents]


def bench_annotate(texts: List[str], labels: List[str], runs: int, shard_size: int, tmp: Path) -> Dict[str, Any]:
    import ray

    pipeline = tmp / "pipeline"
    default_nlp(labels).to_disk(pipeline)
    source = tmp / "input.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - start
    variants = {
        "single process": {},
        "ray 1 actor": {"engine": "ray", "actors": 1},
        "ray 2 actors": {"engine": "ray", "actors": 2},
    }
    times: Dict[str, List[float]] = {name: [] for name in variants}
    outputs: Dict[str, Dict[str, bytes]] = {}
    try:
        for run in range(runs):
            for name, kwargs in variants.items():
                out = tmp / f"out-{run}-{name.replace(' ', '-')}"
                start = time.perf_counter()
                summary = annotate(str(pipeline), source, out, shard_size=shard_size, show_progress=False, **kwargs)
                times[name].append(time.perf_counter() - start)
                assert not summary["failed"], summary
                outputs.setdefault(name, {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.jsonl"))})
                typer.echo(f"annotate run {run} {name}: {times[name][-1]:.1f} s")
    finally:
        ray.shutdown()
    base = statistics.median(times["single process"])
    return {
        "sentences": len(texts),
        "shard_size": shard_size,
        "ray_start_s": round(ray_start, 2),
        "variants": {
            name: {
                **timings(ts, len(texts)),
                "speedup_vs_single_process": round(base / statistics.median(ts), 2),
                "output_identical_to_single_process": outputs[name] == outputs["single process"],
            }
            for name, ts in times.items()
        },
    }


def timings(seconds: List[float], sentences: int) -> Dict[str, Any]:
    """The median of a variant's runs, each run, and the median per sentence."""
    return {
        "median_s": round(statistics.median(seconds), 2),
        "runs_s": [round(t, 2) for t in seconds],
        "s_per_sentence": round(statistics.median(seconds) / sentences, 3),
    }


def timed_runs(nlp, texts: List[str], runs: int, name: str, times: Dict, answers: Dict) -> None:
    """Warm up on two sentences, then time `runs` passes over `texts`; keep the
    first pass's entities and raw answers."""
    list(nlp.pipe(texts[:2]))  # weights, grammar compiler, connection
    for run in range(runs):
        start = time.perf_counter()
        docs = list(nlp.pipe(texts))
        times[name].append(time.perf_counter() - start)
        answers.setdefault(name, [[ents(d), d.user_data["recot"]["recot_ner"]["io"][0]["output"]] for d in docs])
        typer.echo(f"{name} run {run}: {times[name][-1]:.1f} s")


def bench_server(texts: List[str], labels: List[str], runs: int, tmp: Path) -> Dict[str, Any]:
    from spacy_recot.backends.packaged import materialize
    from spacy_recot.backends.vllm import local_vllm

    model_dir = materialize(FAST_PACKAGED)
    times: Dict[str, List[float]] = {"in-process default": [], "vLLM server": []}
    answers: Dict[str, List[Any]] = {}
    start = time.perf_counter()
    with local_vllm(str(model_dir), served_name="qwen", log=str(tmp / "vllm.log")) as url:
        server_start = time.perf_counter() - start
        # The in-process default's settings: constrained, answers up to 256 tokens.
        model = {"@misc": "spacy_recot.OpenAICompatible.v1", "base_url": url, "model": "qwen", "constrained": True}
        model["max_new_tokens"] = 256
        timed_runs(default_nlp(labels, model), texts, runs, "vLLM server", times, answers)
    timed_runs(default_nlp(labels), texts, runs, "in-process default", times, answers)
    base = statistics.median(times["in-process default"])
    server, local = answers["vLLM server"], answers["in-process default"]
    return {
        "sentences": len(texts),
        "server_start_s": round(server_start, 1),
        "variants": {
            name: {**timings(ts, len(texts)), "speedup_vs_in_process": round(base / statistics.median(ts), 2)}
            for name, ts in times.items()
        },
        "same_entities": sum(a[0] == b[0] for a, b in zip(server, local)),
        "same_answer_text": sum(a[1] == b[1] for a, b in zip(server, local)),
        "differing_examples": [
            {"text": t, "server": a[1], "in_process": b[1]} for t, a, b in zip(texts, server, local) if a[0] != b[0]
        ][:5],
    }


@app.command()
def main(
    corpus: Path = typer.Argument(..., help="A converted set folder (test.spacy, labels.json)."),
    output: Path = typer.Option(Path("benchmarks/results/scaling.json")),
    n: int = typer.Option(24, help="Sentences."),
    runs: int = typer.Option(3),
    shard_size: int = typer.Option(12),
    parts: str = typer.Option("annotate,server"),
) -> None:
    nlp = spacy.blank("en")
    texts = [eg.reference.text for eg in read_examples(nlp, corpus / "test.spacy")[:n]]
    labels = read_labels(corpus / "test.spacy")
    results: Dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "corpus": str(corpus),
        "labels": labels,
        "runs": runs,
    }
    if output.exists():  # a part not rerun keeps its last figures
        previous = json.loads(output.read_text(encoding="utf-8"))
        results.update({k: v for k, v in previous.items() if k in ("annotate", "server") and k not in parts})
    with tempfile.TemporaryDirectory() as tmp:
        if "annotate" in parts:
            results["annotate"] = bench_annotate(texts, labels, runs, shard_size, Path(tmp))
        if "server" in parts:
            results["server"] = bench_server(texts, labels, runs, Path(tmp))
    write_results(output, results)


if __name__ == "__main__":
    app()
