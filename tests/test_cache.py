"""The response cache: a rerun reads the answers, the key follows what changes
an answer, and several processes may write at once."""

import json
import multiprocessing
from pathlib import Path

import pytest
import spacy

from spacy_recot.answers import Answer
from spacy_recot.cache import ResponseCache
from spacy_recot.chunks import Chunk, Request

from .conftest import LABELS

TEXTS = ["Barack Obama visited Paris.", "Angela Merkel met Macron in Berlin.", "Nothing here."]


def causal_nlp(model_dir: Path, cache_dir: Path, prompt=None, **model):
    nlp = spacy.blank("en")
    config = {"@misc": "spacy_recot.HFCausal.v2", "name_or_path": str(model_dir), "max_new_tokens": 24, **model}
    nlp.add_pipe("recot_ner", config={"labels": LABELS, "model": config, "cache_dir": str(cache_dir), "prompt": prompt})
    return nlp


# What the trained tiny model answers well: its entities come with scores.
REASONING = {"prompt": {"@misc": "spacy_recot.ReasoningNERPrompt.v1"}, "max_new_tokens": 100}


def records(docs):
    return [(d.user_data["recot"]["recot_ner"], [(e.start_char, e.end_char, e.label_) for e in d.ents]) for d in docs]


def test_a_rerun_reads_every_answer_and_gives_the_same_docs(trained_qwen3_dir, tmp_path):
    nlp = causal_nlp(trained_qwen3_dir, tmp_path / "cache")
    first = records(nlp.pipe(TEXTS))
    pipe = nlp.get_pipe("recot_ner")
    assert pipe.cache.stats["stored"] == pipe.model.stats["requests"] > 0
    # A new pipeline (a new process, say) over the same folder: no generation at all.
    again = causal_nlp(trained_qwen3_dir, tmp_path / "cache")
    assert records(again.pipe(TEXTS)) == first
    assert again.get_pipe("recot_ner").cache.stats["hits"] == pipe.model.stats["requests"]
    assert again.get_pipe("recot_ner").model.stats["requests"] == 0


def test_the_key_follows_model_settings_weights_prompt_and_labels(trained_qwen3_dir, tiny_qwen3_dir, tmp_path):
    cache = ResponseCache(tmp_path)
    pipe = causal_nlp(trained_qwen3_dir, tmp_path).get_pipe("recot_ner")
    request = pipe.requests_for(spacy.blank("en").make_doc(TEXTS[0]))[0]
    base = cache.key(pipe.model.identity(), request)
    assert cache.key(pipe.model.identity(), request) == base  # stable
    other_weights = causal_nlp(tiny_qwen3_dir, tmp_path).get_pipe("recot_ner").model
    other_weights.load()
    other_settings = causal_nlp(trained_qwen3_dir, tmp_path, max_new_tokens=32).get_pipe("recot_ner").model
    other_settings.load()
    keys = {
        cache.key(other_weights.identity(), request),
        cache.key(other_settings.identity(), request),
        cache.key(pipe.model.identity(), Request(request.prompt + " ", request.chunk, request.schema)),
        cache.key(pipe.model.identity(), Request(request.prompt, request.chunk, ["person"])),
    }
    assert base not in keys and len(keys) == 4


def test_the_same_settings_with_retrained_weights_get_another_key(trained_qwen3_dir, tmp_path):
    import torch

    backend = causal_nlp(trained_qwen3_dir, tmp_path).get_pipe("recot_ner").model
    backend.load()
    before = backend.identity()
    with torch.no_grad():
        next(backend.model.parameters())[0, 0] += 0.5
    backend.use_model(backend.model, backend.tokenizer)  # as training's dev scorer hands it over
    assert backend.identity()["settings"] == before["settings"]
    assert backend.identity()["weights"] != before["weights"]


def test_an_unreadable_entry_is_a_miss_and_is_replaced(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put("ab" * 32, Answer.scored("first", [(0, 5, -0.1)]))
    path = tmp_path / "ab" / f"{'ab' * 32}.json"
    path.write_text('{"text": "tru', encoding="utf-8")
    assert cache.get("ab" * 32) is None and cache.stats["unreadable"] == 1
    cache.put("ab" * 32, Answer.scored("second", [(0, 6, -0.2)]))
    answer = cache.get("ab" * 32)
    assert str(answer) == "second" and answer.token_scores == ((0, 6, -0.2),)


@pytest.mark.parametrize(
    "entry",
    [
        {"text": 5, "token_scores": []},  # a number as text
        {"text": "answer", "token_scores": [[0, 6]]},  # the wrong shape
        {"text": "answer", "token_scores": [[0, 6, 1e308]]},  # not a log-probability
        {"text": "answer", "token_scores": [[0, 6, "-0.1"]]},
        {"text": "answer", "token_scores": [[0, 60, -0.1]]},  # past the text's end
        {"text": "answer", "token_scores": [[3, 6, -0.1], [0, 3, -0.1]]},  # out of order
        {"text": "answer", "token_scores": {"0": [0, 6, -0.1]}},
        {"text": "answer"},
        ["answer"],
    ],
)
def test_an_entry_that_does_not_validate_is_a_miss(tmp_path, entry):
    cache = ResponseCache(tmp_path)
    cache.put("cd" * 32, Answer.scored("answer", [(0, 6, -0.1)]))
    (tmp_path / "cd" / f"{'cd' * 32}.json").write_text(json.dumps(entry), encoding="utf-8")
    assert cache.get("cd" * 32) is None and cache.stats["invalid"] == 1


def test_corrupt_entries_are_regenerated_and_overwritten(trained_qwen3_dir, tmp_path):
    nlp = causal_nlp(trained_qwen3_dir, tmp_path / "cache", **REASONING)
    first = records(nlp.pipe(TEXTS))
    assert any("score" in e for record, _ in first for e in record["entities"])
    files = sorted((tmp_path / "cache").rglob("*.json"))
    for i, path in enumerate(files):  # what a bad disk, an old bug or a hand edit leaves
        data = json.loads(path.read_text(encoding="utf-8"))
        scores = data["token_scores"]
        data["token_scores"] = [[s, e] for s, e, _ in scores] if i % 2 else [[s, e, 1e308] for s, e, _ in scores]
        data["token_scores"] = data["token_scores"] or [[0, 1]]
        path.write_text(json.dumps(data), encoding="utf-8")
    again = causal_nlp(trained_qwen3_dir, tmp_path / "cache", **REASONING)
    assert records(again.pipe(TEXTS)) == first  # no error, no empty doc
    pipe = again.get_pipe("recot_ner")
    # Every corrupt entry was a miss, generated again and stored over the bad file.
    assert pipe.cache.stats["invalid"] == pipe.cache.stats["stored"] == pipe.model.stats["requests"] > 0
    assert sorted((tmp_path / "cache").rglob("*.json")) == files
    third = causal_nlp(trained_qwen3_dir, tmp_path / "cache", **REASONING)
    assert records(third.pipe(TEXTS)) == first
    assert third.get_pipe("recot_ner").cache.stats["hits"] == pipe.model.stats["requests"]


def _write_many(path: str, worker: int, n: int) -> int:
    cache = ResponseCache(path)
    chunk = Chunk.from_text("a b c")
    unreadable = 0
    for i in range(n):
        key = cache.key({"m": 1}, Request(f"prompt {i}", chunk, ["x"]))
        cache.put(key, Answer.scored(f"answer {i} " + "x" * 2000, [(0, 6, -0.5)]))
        got = cache.get(cache.key({"m": 1}, Request(f"prompt {(i * 7) % n}", chunk, ["x"])))
        unreadable += got is not None and not str(got).startswith(f"answer {(i * 7) % n} ")
    return unreadable + cache.stats["unreadable"]


def test_several_processes_write_and_read_at_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        bad = pool.starmap(_write_many, [(str(tmp_path), w, 60) for w in range(3)])
    assert bad == [0, 0, 0]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 60  # one per key, no temporary file left behind
    cache = ResponseCache(tmp_path)
    chunk = Chunk.from_text("a b c")
    for i in range(60):
        answer = cache.get(cache.key({"m": 1}, Request(f"prompt {i}", chunk, ["x"])))
        assert str(answer).startswith(f"answer {i} ") and answer.token_scores == ((0, 6, -0.5),)
