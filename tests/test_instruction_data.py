"""Pile-NER to instruction data: both input formats, splitting, negatives, errors."""

import json
import random
from collections import Counter

import pytest

from spacy_recot.instruction_data import (
    InstructionDataError,
    Passage,
    make_instances,
    preprocess,
    read_instances,
    read_pile_ner,
)
from spacy_recot.tasks import GNER_INSTRUCTION, make_recot_prompt

from .conftest import DATA, requires_data

SAMPLE = DATA / "pile-ner-sample" / "sample_data.json"

# A record in the conversation format of Universal-NER/Pile-NER-type.
CONVERSATION = {
    "conversations": [
        {"from": "human", "value": "Text: Barack Obama visited Paris, then Paris Hilton met him in New York."},
        {"from": "gpt", "value": "I've read this text."},
        {"from": "human", "value": "What describes person in the text?"},
        {"from": "gpt", "value": '["Barack Obama", "Paris Hilton"]'},
        {"from": "human", "value": "What describes city in the text?"},
        {"from": "gpt", "value": '["Paris", "New York", "Berlin"]'},
        {"from": "human", "value": "What describes award in the text?"},
        {"from": "gpt", "value": "[]"},
    ],
    "id": "ner_1",
}


def test_conversation_format(tmp_path):
    path = tmp_path / "pile.json"
    path.write_text(json.dumps([CONVERSATION]))
    counts = Counter()
    (passage,) = read_pile_ner(path, counts)
    assert passage.words[:4] == ["Barack", "Obama", "visited", "Paris"]
    found = sorted((" ".join(passage.words[s:e]), label) for s, e, label in passage.spans)
    # "Paris" is found twice: alone, and inside "Paris Hilton" (BIO keeps the longer one).
    assert found == [
        ("Barack Obama", "person"),
        ("New York", "city"),
        ("Paris", "city"),
        ("Paris", "city"),
        ("Paris Hilton", "person"),
    ]
    assert passage.negatives == ["award"]
    assert counts["mentions_not_found"] == 1  # Berlin
    instances = make_instances(passage, make_recot_prompt(), random.Random(0), counts=counts)
    (inst,) = instances
    assert sorted(inst["labels"]) == ["award", "city", "person"]
    assert inst["target"].startswith(
        "Barack(B-person) Obama(I-person) visited(O) Paris(B-city) ,(O) then(O) Paris(B-person) Hilton(I-person)"
    )
    assert counts["overlapping_spans_dropped"] == 1


def test_json_lines_also_read(tmp_path):
    path = tmp_path / "pile.jsonl"
    path.write_text(json.dumps(CONVERSATION) + "\n\n" + json.dumps(CONVERSATION) + "\n")
    assert len(list(read_pile_ner(path))) == 2


@requires_data(SAMPLE)
def test_gliner_sample_to_instances(tmp_path):
    out = tmp_path / "train.jsonl"
    counts = preprocess(SAMPLE, out, prompt="gner", n_negatives=2, seed=3)
    rows = read_instances(out)
    assert counts["passages"] == 64 and counts["instances"] == len(rows)
    first = rows[0]
    assert first["words"] == ["State", "University", "of", "New", "York", "Press", ",", "1997", "."]
    assert first["tags"][:2] == ["B-publisher", "I-publisher"]
    assert first["source"].startswith(GNER_INSTRUCTION)
    assert "publisher" in first["labels"] and len(first["labels"]) == 3  # 1 positive + 2 sampled
    assert first["target"].split()[0] == "State(B-publisher)"
    # Labels are shuffled per instance, deterministically for a seed.
    preprocess(SAMPLE, tmp_path / "same.jsonl", prompt="gner", n_negatives=2, seed=3)
    assert read_instances(tmp_path / "same.jsonl") == rows
    preprocess(SAMPLE, tmp_path / "other.jsonl", prompt="gner", n_negatives=2, seed=4)
    assert [r["labels"] for r in read_instances(tmp_path / "other.jsonl")] != [r["labels"] for r in rows]


@requires_data(SAMPLE)
def test_long_passages_are_split_between_entities(tmp_path):
    counts = Counter()
    passages = list(read_pile_ner(SAMPLE, counts))
    longest = max(passages, key=lambda p: len(p.words))
    instances = make_instances(longest, make_recot_prompt(), random.Random(0), max_words=12, counts=counts)
    assert len(instances) > 1
    assert sum(len(i["words"]) for i in instances) == len(longest.words)
    for inst in instances:
        assert len(inst["words"]) <= 12
        assert not inst["tags"][0].startswith("I-")  # no piece starts inside an entity
    assert counts["entities_cut"] == 0
    # Every entity of the passage survives, whole, in one piece.
    whole = sum(t.startswith("B-") for i in instances for t in i["tags"])
    assert whole == len(longest.spans) - counts["overlapping_spans_dropped"]


def test_token_budget_fits_source_and_target(t5_tokenizer):
    words = ("Barack Obama visited Paris and Angela Merkel stayed in Berlin " * 6).split()
    tags = ["B-person", "I-person", "O", "B-location", "O", "B-person", "I-person", "O", "O", "B-location"] * 6
    spans = [
        (i, i + 2, "person") if t == "B-person" else (i, i + 1, "location")
        for i, t in enumerate(tags)
        if t.startswith("B-")
    ]
    passage = Passage("p", words, spans)
    prompt = make_recot_prompt()
    pool = ["organisation", "a very long label name for a kind of thing", "person", "location"]
    for max_source, max_target in ((1000, 60), (400, 1000)):
        instances = make_instances(
            passage,
            prompt,
            random.Random(0),
            label_pool=pool,
            n_negatives=2,
            tokenizer=t5_tokenizer,
            max_source_tokens=max_source,
            max_target_tokens=max_target,
        )
        assert len(instances) > 1
        assert sum(len(i["words"]) for i in instances) == len(words)
        for inst in instances:
            assert len(t5_tokenizer(inst["target"])["input_ids"]) <= max_target
            assert len(t5_tokenizer(inst["source"])["input_ids"]) <= max_source


@pytest.mark.parametrize(
    "content,match",
    [
        (
            '[{"tokenized_text": ["a"], "ner": [[0, 3, "x"]]}]',
            "record 0: 'ner' span \\[0, 3, 'x'\\] is outside the 1 words",
        ),
        ('[{"tokenized_text": ["a"], "ner": [[0, "x"]]}]', "record 0: 'ner' item"),
        ('[{"text": "a"}]', "record 0: neither the conversation format"),
        ('{"conversations": [{"from": "human", "value": "Hello"}]}', "first turn does not start with 'Text:'"),
        ('{"tokenized_text": ["a"], "ner": []}\n{oops\n', "pile.json:2: not JSON"),
    ],
)
def test_malformed_input_names_file_and_record(tmp_path, content, match):
    path = tmp_path / "pile.json"
    path.write_text(content)
    with pytest.raises(InstructionDataError, match=match):
        list(read_pile_ner(path))


@requires_data(SAMPLE)
def test_cli_preprocess(tmp_path):
    from typer.testing import CliRunner

    from spacy_recot.cli import app

    result = CliRunner().invoke(app, ["preprocess", str(SAMPLE), str(tmp_path / "out.jsonl"), "--max-words", "30"])
    assert result.exit_code == 0, result.output
    assert "instances:" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text('[{"text": 1}]')
    result = CliRunner().invoke(app, ["preprocess", str(bad), str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1 and "bad.json record 0" in result.output


@requires_data(DATA / "crossner")
def test_converted_conll_set_as_training_data(tmp_path):
    from spacy_recot.conll import convert

    convert(DATA / "crossner" / "politics" / "train.txt", tmp_path / "train.spacy", None, None)
    counts = preprocess(tmp_path / "train.spacy", tmp_path / "train.jsonl", max_words=1000)
    rows = read_instances(tmp_path / "train.jsonl")
    assert counts["passages"] == 200 and len(rows) == 200
    labels = json.loads((tmp_path / "train.labels.json").read_text())
    # Every instance is asked about the set's whole label set.
    assert all(sorted(r["labels"]) == sorted(label.lower() for label in labels) for r in rows)
    assert counts["entities"] > 1000
