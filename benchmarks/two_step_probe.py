"""Probe: does asking for the spans first and their types second (the two-step
idea behind ReCoT-NER) help the packaged 0.5B model, against the one-prompt
default? Runs against an OpenAI-compatible server serving that model (vLLM,
started apart), on the first N sentences of each set; writes the papers'
normalized P/R/F per set. Step 1 lists the spans under a JSON schema. Step 2,
`--typing generate`: one prompt maps every span to a type under a schema;
`--typing likelihood`: each span gets the label (or "other", then dropped)
whose answer text is most likely after a question about that span (vLLM's
`prompt_logprobs` on /v1/completions; needs --tokenizer for the chat template).

    python benchmarks/two_step_probe.py corpus/gner --base-url http://127.0.0.1:8471/v1 --n 100 \
        --output benchmarks/results/two_step_probe.json
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import httpx
import spacy
import typer
from results_io import write_results

from spacy_recot.chunks import doc_words
from spacy_recot.conll import read_labels
from spacy_recot.evaluation import read_examples
from spacy_recot.metrics import normalize
from spacy_recot.tasks.grammar import candidate_entities

SPANS_PROMPT = """Please list every named entity in the following sentence: names of people, organizations, places, works, products, events, and terms of these kinds: {labels}. Copy each entity exactly as it is written in the sentence. Return them in JSON format.

Output format:
{{"entities": ["...", "..."]}}

Sentence:
{sentence}"""

TYPES_PROMPT = """Sentence:
{sentence}

Entity types: {labels}

For each entity below, choose the entity type it has in the sentence, or "other" if it has none of these types. Return a JSON object that maps each entity to its type.

Entities: {spans}"""


def chat(client: httpx.Client, url: str, prompt: str, schema: Dict[str, Any], max_tokens: int) -> str:
    body = {
        "model": "qwen",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    }
    for _ in range(3):
        response = client.post(f"{url}/chat/completions", json=body, timeout=300)
        if response.status_code == 200:
            return response.json()["choices"][0]["message"]["content"] or ""
    response.raise_for_status()
    return ""


def two_step(
    client: httpx.Client,
    url: str,
    sentence: str,
    candidates: List[str],
    labels: List[str],
    tokenizer: Any = None,
) -> List[Tuple[str, str]]:
    label_list = json.dumps(labels)
    spans_schema = {
        "type": "object",
        "properties": {"entities": {"type": "array", "items": {"type": "string", "enum": candidates}}},
        "required": ["entities"],
        "additionalProperties": False,
    }
    try:
        spans = json.loads(
            chat(client, url, SPANS_PROMPT.format(labels=label_list, sentence=sentence), spans_schema, 160)
        )
        spans = list(dict.fromkeys(s for s in spans.get("entities", []) if isinstance(s, str)))
    except ValueError:
        return []
    if not spans:
        return []
    if tokenizer is not None:
        return likelihood_types(client, url, tokenizer, sentence, spans, labels)
    options = labels + ["other"]
    types_schema = {
        "type": "object",
        "properties": {s: {"type": "string", "enum": options} for s in spans},
        "required": spans,
        "additionalProperties": False,
    }
    prompt = TYPES_PROMPT.format(sentence=sentence, labels=json.dumps(options), spans=json.dumps(spans))
    try:
        types = json.loads(chat(client, url, prompt, types_schema, 40 + 12 * len(spans)))
    except ValueError:
        return []
    return [(s, t) for s, t in types.items() if t in labels]


QUESTION = 'Sentence: {sentence}\n\nWhat type of entity is "{span}" in this sentence? Choose one of: {labels}.'


def likelihood_types(
    client: httpx.Client, url: str, tokenizer: Any, sentence: str, spans: List[str], labels: List[str]
) -> List[Tuple[str, str]]:
    """Each span's most likely label: the log-probability of the label written as
    the whole answer (its tokens and the end of the turn)."""
    options = labels + ["other"]
    out = []
    for span in spans:
        question = QUESTION.format(sentence=sentence, span=span, labels=", ".join(options))
        prefix = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        start = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
        scores = {}
        for label in options:
            text = prefix + label + "<|im_end|>"
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            body = {"model": "qwen", "prompt": text, "max_tokens": 1, "prompt_logprobs": 0}
            rows = client.post(f"{url}/completions", json=body, timeout=300).json()["choices"][0]["prompt_logprobs"]
            # Each row is keyed by token id: the prompt's own token is there.
            scores[label] = sum(rows[i][str(ids[i])]["logprob"] for i in range(start, len(ids)))
        best = max(scores, key=scores.get)
        if best != "other":
            out.append((span, best))
    return out


def main(
    data: Path = typer.Argument(...),
    base_url: str = typer.Option("http://127.0.0.1:8471/v1"),
    n: int = typer.Option(100),
    sets: List[str] = typer.Option([], "--set"),
    in_flight: int = typer.Option(32),
    typing: str = typer.Option("generate", help="generate or likelihood"),
    tokenizer_dir: Optional[Path] = typer.Option(None, "--tokenizer", help="The served model's folder."),
    output: Path = typer.Option(Path("benchmarks/results/two_step_probe.json")),
) -> None:
    nlp = spacy.blank("en")
    tokenizer = None
    if typing == "likelihood":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    prompts = {"spans": SPANS_PROMPT, "types": QUESTION if tokenizer else TYPES_PROMPT}
    results: Dict[str, Any] = {"n": n, "typing": typing, "prompts": prompts, "datasets": {}}
    client = httpx.Client(limits=httpx.Limits(max_connections=in_flight))
    for path in sorted(p for p in data.glob("*/test.spacy") if not sets or p.parent.name in sets):
        labels = read_labels(path)
        examples = read_examples(nlp, path, limit=n)
        start = time.perf_counter()

        def run(eg: Any, labels: List[str] = labels) -> List[Tuple[str, str]]:
            chunk = doc_words(eg.reference)
            return two_step(client, base_url, eg.reference.text, candidate_entities(chunk, 12), labels, tokenizer)

        with ThreadPoolExecutor(in_flight) as pool:
            predictions = list(pool.map(run, examples))
        tp = n_pred = n_gold = 0
        for eg, pred in zip(examples, predictions):
            p = {(normalize(t), normalize(lab)) for t, lab in pred}
            g = {(normalize(e.text), normalize(e.label_)) for e in eg.reference.ents}
            tp, n_pred, n_gold = tp + len(p & g), n_pred + len(p), n_gold + len(g)
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_gold if n_gold else 0.0
        f = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        results["datasets"][path.parent.name] = {
            "p": prec,
            "r": rec,
            "f": f,
            "seconds": time.perf_counter() - start,
            "predictions": predictions,
        }
        typer.echo(f"{path.parent.name}: P {prec:.3f} R {rec:.3f} F {f:.3f}")
    fs = [v["f"] for v in results["datasets"].values()]
    results["average_f"] = sum(fs) / len(fs)
    typer.echo(f"average F {results['average_f']:.3f}")
    write_results(output, results)


if __name__ == "__main__":
    typer.run(main)
