"""Speed of both model paths against their plain loops and floors, side by side in one run.

Causal path (--causal-model, by default the packaged Qwen2.5-Coder-0.5B the
speed figures were first taken on; the default prompt through the chat
template, greedy, at most --max-new-tokens new tokens):
- plain loop: transformers float32 `generate`, one sentence at a time, no grammar;
- floor: one teacher-forced forward pass over prompt and plain-loop answer, in
  batches of 16 (what generation would cost if every token were known);
- the component in several configurations, the default among them;
- the default configuration with its default model (--default-model, the
  packaged Qwen2.5-Coder-1.5B), whose time against the default settings on
  --causal-model is what the bigger model costs.

Seq2seq path (a T5 of flan-t5-small's shape, here with random weights, on the
GNER prompt; answers are BIO over the sentence's words):
- plain loop: transformers float32 `generate`, one sentence at a time, every
  answer forced to the length of its sentence's gold BIO answer;
- floor: one teacher-forced pass over source and gold answer, batches of 16;
- forced-word decoding (`decoding = "forced"`), whose number of passes is
  measured with a model that writes the gold answer (the `--passes` figure
  uses the gold answer's entity runs: random weights make a pass count
  meaningless).

Each timing is the median of --runs runs, the variants interleaved so that
drift hits them alike; ratios are to the plain loop of the same run. Writes JSON.

    OMP_NUM_THREADS=1 python benchmarks/speed.py corpus/gner --output benchmarks/results/speed.json
    OMP_NUM_THREADS=1 python benchmarks/speed.py corpus/gner --paths causal --only-default \
        --causal-model qwen2.5-coder-1.5b-instruct --runs 1 -o benchmarks/results/speed_1.5b_no_amx.json
"""

import copy
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import spacy
import torch
import typer
from results_io import machine, write_results

from spacy_recot.backends import resolve_dtype
from spacy_recot.backends.packaged import DEFAULT_PACKAGED, FAST_PACKAGED
from spacy_recot.conll import read_labels
from spacy_recot.evaluation import read_examples

Ents = List[Tuple[int, int, str]]
PLAIN = "plain loop (float32, batch 1, no grammar)"
DEFAULT = "default (dtype auto; batch 16, grammar, shared prefix, guessed tokens)"
BF16 = "default settings in bfloat16"
FP16 = "default settings in float16"
INT4 = "default settings, 4-bit weights (weights int4)"
DEFAULT_MODEL = "default settings and default model (qwen2.5-coder-1.5b)"
NO_GUESSES = "default without guessed tokens (draft_tokens 0)"
FLOOR_DEFAULT = "floor in the default's precision (teacher-forced, batch 16)"
RAW_GNER = Path(__file__).resolve().parents[2] / "shared" / "data" / "gner"
PLAIN_SEQ2SEQ = "plain loop (float32 generate, batch 1)"


def ents_of(doc: Any) -> Ents:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def causal_pipeline(labels: List[str], max_new_tokens: int, name: str, **settings: Any) -> Any:
    model = {
        # v4 without an adapter is v3 (the untuned model these figures were first taken on).
        "@misc": "spacy_recot.PackagedCausal.v4",
        "adapter": None,
        "name": name,
        "max_new_tokens": max_new_tokens,
        **settings.pop("model", {}),
    }
    nlp = spacy.blank("en")
    nlp.add_pipe("recot_ner", config={"labels": labels, "model": model, **settings})
    nlp.initialize()
    return nlp


def plain_causal_loop(nlp: Any, docs: List[Any], max_new_tokens: int) -> List[List[Tuple[Any, str]]]:
    """One `generate` per prompt, float32, no grammar: the loop a user writes
    first. Returns each doc's (request, answer) pairs."""
    pipe = nlp.get_pipe("recot_ner")
    backend = pipe.model
    out_pairs = []
    for doc in docs:
        pairs = []
        for request in pipe.requests_for(doc):
            enc = backend.tokenizer(backend.chat(request.prompt), return_tensors="pt", add_special_tokens=False)
            with torch.inference_mode():
                out = backend.model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=backend.tokenizer.pad_token_id
                )
            answer = backend.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            pairs.append((request, answer))
        out_pairs.append(pairs)
    return out_pairs


def causal_floor(model: Any, tokenizer: Any, texts: List[str], batch: int = 16) -> None:
    """A teacher-forced forward pass over prompt + answer, `batch` rows at a time."""
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            model(**enc)


def measure_causal(
    data: Path,
    set_name: str,
    n: int,
    runs: int,
    max_new_tokens: int,
    model_name: str,
    default_model: str,
    only_default: bool = False,
    also: Sequence[str] = (),
) -> Dict[str, Any]:
    path = data / set_name / "test.spacy"
    labels = read_labels(path)
    blank = spacy.blank("en")
    golds = [eg.predicted for eg in read_examples(blank, path, limit=n)]
    configs: Dict[str, Dict[str, Any]] = {
        "float32, batch 8, grammar, no prefix cache (0.1's settings)": {
            "model": {"dtype": "float32", "reuse_prefix": False},
            "batch_size": 8,
        },
        DEFAULT: {},
        NO_GUESSES: {"model": {"draft_tokens": 0}},
        BF16: {"model": {"dtype": "bfloat16"}},
        FP16: {"model": {"dtype": "float16"}},
        INT4: {"model": {"weights": "int4"}},
    }
    # The half precision "auto" picks on this CPU is the default itself: not run twice.
    configs.pop({"torch.bfloat16": BF16, "torch.float16": FP16}.get(str(resolve_dtype("auto", "cpu")), ""), None)
    if only_default:  # the plain loop against the default alone (a bigger model's long plain loop)
        named = {"bfloat16": BF16, "float16": FP16, "int4": INT4}
        unknown = set(also) - set(named)
        if unknown:
            raise typer.BadParameter(f"--also {sorted(unknown)}: choose from {', '.join(named)}")
        wanted = {named[a] for a in also} if also else {BF16, FP16}
        configs = {k: v for k, v in configs.items() if k == DEFAULT or k in wanted}
    reference = causal_pipeline(labels, max_new_tokens, model_name, model={"dtype": "float32", "constrained": False})
    pipelines = {
        name: causal_pipeline(labels, max_new_tokens, model_name, **copy.deepcopy(c)) for name, c in configs.items()
    }
    if default_model != model_name and not only_default:
        pipelines[DEFAULT_MODEL] = causal_pipeline(labels, max_new_tokens, default_model)
    ref_pipe = reference.get_pipe("recot_ner")
    default = pipelines[DEFAULT].get_pipe("recot_ner").model
    timings: Dict[str, List[float]] = {}
    outputs: Dict[str, List[Ents]] = {}
    plain: List[Any] = []
    docs = [blank.make_doc(d.text) for d in golds]
    texts = [d.text for d in golds]
    for _ in range(runs):
        start = time.perf_counter()
        plain = plain_causal_loop(reference, docs, max_new_tokens)
        timings.setdefault(PLAIN, []).append(time.perf_counter() - start)
        full = [ref_pipe.model.chat(request.prompt) + answer for pairs in plain for request, answer in pairs]
        floors = (
            []
            if only_default
            else [("floor float32 (teacher-forced, batch 16)", ref_pipe.model), (FLOOR_DEFAULT, default)]
        )
        for name, backend in floors:
            start = time.perf_counter()
            causal_floor(backend.model, backend.tokenizer, full)
            timings.setdefault(name, []).append(time.perf_counter() - start)
        for name, nlp in pipelines.items():
            start = time.perf_counter()
            done = list(nlp.pipe(texts))
            timings.setdefault(name, []).append(time.perf_counter() - start)
            outputs[name] = [ents_of(d) for d in done]
        typer.echo(
            f"causal run {len(timings[PLAIN])}: " + ", ".join(f"{k[:24]} {v[-1]:.1f}s" for k, v in timings.items())
        )
    # The plain loop's answers read by the component's own reader.
    plain_ents = []
    for doc, pairs in zip(docs, plain):
        ref_pipe.set_annotations(doc, pairs)
        plain_ents.append(ents_of(doc))
    plain_seconds = statistics.median(timings[PLAIN])
    float32_grammar = outputs.get("float32, batch 8, grammar, no prefix cache (0.1's settings)")
    variants = {}
    for name, ts in timings.items():
        median = statistics.median(ts)
        entry: Dict[str, Any] = {
            "seconds": ts,
            "median_seconds": median,
            "seconds_per_sentence": median / len(golds),
            "speedup_vs_plain_loop": plain_seconds / median,
        }
        if name in outputs and name != DEFAULT_MODEL:  # another model's answers are not comparable
            entry["same_entities_as_plain_loop"] = sum(a == b for a, b in zip(outputs[name], plain_ents))
            if float32_grammar is not None:
                entry["same_entities_as_float32_grammar"] = sum(a == b for a, b in zip(outputs[name], float32_grammar))
        variants[name] = entry
        typer.echo(f"causal  {name:<45} {median / len(golds):6.2f} s/sentence  x{plain_seconds / median:5.1f}")
    if DEFAULT_MODEL in variants and DEFAULT in variants:
        variants[DEFAULT_MODEL]["time_vs_default_settings_on_causal_model"] = (
            variants[DEFAULT_MODEL]["median_seconds"] / variants[DEFAULT]["median_seconds"]
        )
    return {
        "model": f"{model_name} (packaged)",
        "default_model": default_model,
        "set": set_name,
        "sentences": len(golds),
        "prompts": sum(len(pairs) for pairs in plain),
        "default_dtype": str(default.model.dtype),
        "default_backend_stats": dict(default.stats),
        "plain_loop_answer_tokens": [
            len(ref_pipe.model.tokenizer(answer, add_special_tokens=False)["input_ids"])
            for pairs in plain
            for _, answer in pairs
        ],
        "max_new_tokens": max_new_tokens,
        "variants": variants,
    }


def small_t5(tokenizer: Any, seed: int = 0) -> Any:
    """Random weights in flan-t5-small's shape (vocabulary size included)."""
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=32128,
        d_model=512,
        d_ff=1024,
        d_kv=64,
        num_layers=8,
        num_decoder_layers=8,
        num_heads=6,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return T5ForConditionalGeneration(config).eval()


def oracle_passes(choices: Any, gold: List[str]) -> List[List[str]]:
    """Decoder passes forced decoding needs when the model's greedy answer is
    the gold one. The simulated model writes each word's gold tag, except that
    it cannot continue an entity the context did not open (it opens one: B-x);
    where the context differs from its answer it follows the context. Its
    logits go through the real `WordChoices.update`. Returns the tags before
    each pass and after the last (so len - 1 passes; the last two are equal)."""
    tags = ["O"] * len(gold)
    history = [tags]
    vocab = 1 + max(t for piece in choices.pieces for seq in piece.values() for t in seq)
    for _ in range(10 * len(gold) + 2):
        seq = choices.sequence(tags)
        logits = torch.zeros(len(seq), max(vocab, choices.eos + 1))
        pos, previous = 0, "O"
        for piece, old, want in zip(choices.pieces, tags, gold):
            if want.startswith("I-") and previous[2:] != want[2:]:
                want = "B-" + want[2:]
            target, old_seq = piece[want], piece[old]
            for k in range(len(old_seq)):
                agrees = old_seq[:k] == target[:k] and k < len(target)
                logits[pos + k, target[k] if agrees else old_seq[k]] = 1.0
            pos += len(old_seq)
            previous = old
        new = choices.update(tags, logits)
        history.append(new)
        if new == tags:
            break
        tags = new
    return history


def measure_seq2seq(data: Path, set_name: str, n: int, runs: int) -> Dict[str, Any]:
    import tempfile

    from spacy_recot.chunks import Chunk
    from spacy_recot.conll import read_conll
    from spacy_recot.generation.bio_forced import TagHead, WordChoices, unchanged_positions
    from spacy_recot.tasks import make_gner_prompt
    from spacy_recot.testing.tiny import train_t5_tokenizer

    path = data / set_name / "test.spacy"
    labels = read_labels(path)
    # The words and gold tags, from the team's copy of the GNER sets.
    sentences = list(read_conll(RAW_GNER / set_name / "test.txt"))
    prompt = make_gner_prompt()
    # Trained on the set's text and answers, with the prompt's instruction.
    lines = [" ".join(s.words) for s in sentences]
    lines += [" ".join(f"{w}({t})" for w, t in zip(s.words, s.tags)) for s in sentences]
    lines += prompt.render(Chunk.from_words(["x"]), labels).splitlines()
    tokenizer = train_t5_tokenizer(lines, vocab_size=2000)
    # By prompt length, as the component orders its batches (less padding).
    sentences = sorted(sentences[:n], key=lambda s: len(" ".join(s.words)))
    sources = [prompt.render(Chunk.from_words(s.words), labels) for s in sentences]
    targets = [" ".join(f"{w}({t})" for w, t in zip(s.words, s.tags)) for s in sentences]
    target_ids = [tokenizer(t)["input_ids"] for t in targets]
    choices = [WordChoices.build(tokenizer, s.words, labels) for s in sentences]
    # Pass counts under the gold answers (independent of the weights).
    histories = [oracle_passes(c, s.tags) for c, s in zip(choices, sentences)]
    passes = [len(h) - 1 for h in histories]
    model32 = small_t5(tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        model32.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        model16 = small_t5(tokenizer).to(torch.bfloat16)
        model16.load_state_dict(model32.state_dict())
        pipelines = {}
        for name, settings in {
            "component forced, float32, batch 16": {"dtype": "float32"},
            "component forced, default (dtype auto, batch 16)": {},
            "component generate (decoding free), float32, batch 16": {"dtype": "float32", "decoding": "free"},
        }.items():
            nlp = spacy.blank("en")
            model = {"@misc": "spacy_recot.HFSeq2Seq.v3", "name_or_path": tmp, **settings}
            nlp.add_pipe("recot_ner", config={"labels": labels, "model": model})
            nlp.initialize()
            pipelines[name] = nlp
    texts = [" ".join(s.words) for s in sentences]
    timings: Dict[str, List[float]] = {}
    outputs: Dict[str, List[Ents]] = {}

    def floor(model: Any) -> None:
        for i in range(0, len(sources), 16):
            enc = tokenizer(sources[i : i + 16], return_tensors="pt", padding=True)
            labels_ = tokenizer(targets[i : i + 16], return_tensors="pt", padding=True)["input_ids"]
            with torch.inference_mode():
                model(**enc, labels=labels_)

    def gold_schedule(model: Any) -> None:
        """Forced decoding's decoder work when the model's answers follow the
        gold ones: the passes `oracle_passes` made, replayed through the real
        `TagHead` (same answers, same reuse of the cache)."""
        for i in range(0, len(sources), 16):
            enc = tokenizer(sources[i : i + 16], return_tensors="pt", padding=True)
            rows = list(range(i, min(i + 16, len(sources))))
            with torch.inference_mode():
                states = model.get_encoder()(**enc).last_hidden_state
                head = TagHead(model, sorted({t for r in rows for t in choices[r].tokens()}))
                for b, r in enumerate(rows):
                    length = int(enc["attention_mask"][b].sum())
                    seqs = [choices[r].sequence(tags) for tags in histories[r]]
                    head.start(states[b : b + 1, :length], seqs[0])
                    for p in range(1, len(seqs) - 1):
                        head.resume(seqs[p], unchanged_positions(seqs[p - 1], seqs[p]))

    for _ in range(runs):
        for name, model in (
            ("forced, gold pass schedule, float32, batch 16", model32),
            ("forced, gold pass schedule, bfloat16, batch 16", model16),
        ):
            start = time.perf_counter()
            gold_schedule(model)
            timings.setdefault(name, []).append(time.perf_counter() - start)
        start = time.perf_counter()
        for source, ids in zip(sources, target_ids):
            enc = tokenizer(source, return_tensors="pt")
            with torch.inference_mode():
                model32.generate(**enc, max_new_tokens=len(ids), min_new_tokens=len(ids), do_sample=False)
        timings.setdefault(PLAIN_SEQ2SEQ, []).append(time.perf_counter() - start)
        for name, model in (("floor float32 (teacher-forced, batch 16)", model32), ("floor bfloat16", model16)):
            start = time.perf_counter()
            floor(model)
            timings.setdefault(name, []).append(time.perf_counter() - start)
        for name, nlp in pipelines.items():
            if "free" in name:
                # Plain generate, every answer as long as the longest gold answer of its batch.
                backend = nlp.get_pipe("recot_ner").model
                backend.generation["min_new_tokens"] = backend.generation["max_new_tokens"] = max(map(len, target_ids))
            start = time.perf_counter()
            done = list(nlp.pipe(texts))
            timings.setdefault(name, []).append(time.perf_counter() - start)
            outputs[name] = [ents_of(d) for d in done]
    plain_seconds = statistics.median(timings[PLAIN_SEQ2SEQ])
    floor32 = statistics.median(timings["floor float32 (teacher-forced, batch 16)"])
    floor16 = statistics.median(timings["floor bfloat16"])
    variants = {}
    for name, ts in timings.items():
        median = statistics.median(ts)
        variants[name] = {
            "seconds": ts,
            "median_seconds": median,
            "ms_per_sentence": 1000 * median / len(sentences),
            "speedup_vs_plain_loop": plain_seconds / median,
            "ratio_to_floor_same_precision": median / (floor16 if "default" in name or "bfloat16" in name else floor32),
        }
        typer.echo(
            f"seq2seq {name:<55} {1000 * median / len(sentences):7.1f} ms/sentence  x{plain_seconds / median:5.1f}"
        )
    forced = pipelines["component forced, float32, batch 16"].get_pipe("recot_ner").model.stats
    return {
        "model": "random weights, flan-t5-small's shape (vocabulary 32128)",
        "set": set_name,
        "sentences": len(sentences),
        "labels": labels,
        "mean_gold_answer_tokens": statistics.mean(map(len, target_ids)),
        "gold_passes": {
            "mean": statistics.mean(passes),
            "max": max(passes),
            "mean_entity_runs": statistics.mean(sum(t.startswith("B-") for t in s.tags) for s in sentences),
            "fixed_point_is_gold": sum(h[-1] == s.tags for h, s in zip(histories, sentences)),
        },
        "random_weight_passes_per_batch": forced["passes"] / max(forced["generate_calls"], 1),
        "forced_equals_float32_generate_constrained": "tested in tests/test_bio_decoding.py",
        "same_entities_forced_bf16_vs_float32": sum(
            a == b
            for a, b in zip(
                outputs["component forced, default (dtype auto, batch 16)"],
                outputs["component forced, float32, batch 16"],
            )
        ),
        "variants": variants,
    }


def main(
    data: Path = typer.Argument(..., help="Folder of converted GNER sets: <set>/test.spacy"),
    causal_set: str = typer.Option("crossner_ai", "--causal-set"),
    seq2seq_set: str = typer.Option("crossner_ai", "--seq2seq-set"),
    n: int = typer.Option(16, "--n", help="Sentences per path"),
    runs: int = typer.Option(3, "--runs"),
    max_new_tokens: int = typer.Option(
        256, "--max-new-tokens", help="Causal token limit (the default configuration's)"
    ),
    paths: str = typer.Option("causal,seq2seq", "--paths"),
    causal_model: str = typer.Option(FAST_PACKAGED, "--causal-model", help="Packaged model name"),
    default_model: str = typer.Option(DEFAULT_PACKAGED, "--default-model", help="The default's packaged model"),
    only_default: bool = typer.Option(
        False, "--only-default", help="Causal: the plain loop and the default only (no floors, no other settings)"
    ),
    also: List[str] = typer.Option(
        [], "--also", help="With --only-default: also these settings (bfloat16, float16, int4), not the half precisions"
    ),
    output: Path = typer.Option(Path("benchmarks/results/speed.json"), "--output", "-o"),
) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    results: Dict[str, Any] = {
        **machine(),
        "threads": torch.get_num_threads(),
        "runs": runs,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if output.exists():  # a path not rerun keeps its last figures
        previous = json.loads(output.read_text(encoding="utf-8"))
        results.update({k: v for k, v in previous.items() if k in ("causal", "seq2seq") and k not in paths})
    if "seq2seq" in paths:
        results["seq2seq"] = measure_seq2seq(data, seq2seq_set, n, runs)
    if "causal" in paths:
        results["causal"] = measure_causal(
            data, causal_set, n, runs, max_new_tokens, causal_model, default_model, only_default, also
        )
    write_results(output, results)


if __name__ == "__main__":
    typer.run(main)
