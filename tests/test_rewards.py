"""The GRPO rewards on hand-built answers, read as the component reads them."""

import pytest

from spacy_recot.rewards import REWARD_WEIGHTS, answer_text, f1_reward, schema_reward, weighted_reward

SENTENCE = "Barack Obama visited Paris ."
SCHEMA = ["location", "person"]
GOLD = [{"text": "Barack Obama", "label": "person"}, {"text": "Paris", "label": "location"}]


def answer(entities, think="Obama is a person; Paris is a place."):
    import json

    return f"<think>\n{think}\n</think>\n" + json.dumps({"entities": entities}, indent=2)


def rewards(completion, gold=GOLD, schema=SCHEMA, **kw):
    f = f1_reward([completion], [gold], [schema], [SENTENCE], **kw)[0]
    s = schema_reward([completion], [schema])[0]
    return f, s


def test_exact_answer():
    assert rewards(answer({"person": ["Barack Obama"], "location": ["Paris"]})) == (1.0, 1.0)


def test_partial_answer():
    f, s = rewards(answer({"person": ["Obama"], "location": ["Paris"]}))
    assert f == pytest.approx(0.5) and s == 1.0


def test_wrong_label():
    f, s = rewards(answer({"location": ["Barack Obama", "Paris"]}))
    assert f == pytest.approx(0.5) and s == 1.0


def test_empty_gold_and_empty_answer():
    assert rewards(answer({}), gold=[]) == (1.0, 1.0)
    assert rewards(answer({}), gold=[], empty_gold_reward=0.0) == (0.0, 1.0)  # the reference's rule
    assert rewards(answer({"person": ["Paris"]}), gold=[])[0] == 0.0


def test_empty_answer_for_a_sentence_with_entities():
    assert rewards(answer({})) == (0.0, 1.0)
    assert rewards("") == (0.0, 0.0)


def test_invalid_json_is_read_for_f1_but_not_schema_valid():
    truncated = '<think>x</think>\n{"entities": {"person": ["Barack Obama"], "location": ["Par'
    f, s = rewards(truncated)
    assert f == pytest.approx(2 / 3) and s == 0.0
    assert rewards("<think>I cannot decide</think> no JSON here") == (0.0, 0.0)
    single_quotes = "<think>x</think>{'entities': {'person': ['Barack Obama']}}"
    assert rewards(single_quotes)[1] == 0.0


def test_unknown_label():
    f, s = rewards(answer({"person": ["Barack Obama"], "city": ["Paris"]}))
    assert f == pytest.approx(2 / 3) and s == 0.0


def test_entity_not_in_the_sentence_earns_nothing():
    f, _ = rewards(answer({"person": ["Barack Obama", "Michelle Obama"], "location": ["Paris"]}))
    assert f == 1.0  # "Michelle Obama" is not in the sentence: the reader drops it, as the component does


def test_chat_message_completions_and_answer_extraction():
    msg = [{"role": "assistant", "content": answer({"person": ["Barack Obama"], "location": ["Paris"]})}]
    assert rewards(msg) == (1.0, 1.0)
    fenced = '<think>x</think>\n```json\n{"entities": {"person": ["Barack Obama"]}}\n```'
    assert answer_text(fenced) == '{"entities": {"person": ["Barack Obama"]}}'
    assert schema_reward([fenced], [SCHEMA]) == [1.0]
    tagged = '<answer>{"entities": {"location": ["Paris"]}}</answer>'
    assert schema_reward([tagged], [SCHEMA]) == [1.0]


def test_trl_calls_with_keyword_arguments_and_reasoningner_gold():
    kwargs = {
        "prompts": ["p", "p"],
        "completions": [answer({"person": ["Barack Obama"]}), "garbage"],
        "completion_ids": [[1], [2]],
        "entities": [{"person": ["Barack Obama"]}, {"person": ["Barack Obama"]}],
        "schema": [SCHEMA, SCHEMA],
        "sentence": [SENTENCE, SENTENCE],
        "trainer_state": None,
    }
    assert f1_reward(**kwargs) == [1.0, 0.0]
    assert schema_reward(**kwargs) == [1.0, 0.0]
    row = {"entities": GOLD, "schema": SCHEMA, "sentence": SENTENCE}
    assert weighted_reward(answer({"person": ["Barack Obama"], "location": ["Paris"]}), row) == sum(REWARD_WEIGHTS)


def test_unreadable_answers_score_nothing_even_when_gold_is_empty():
    answers = [
        "<think>cut off",
        "no json here",
        answer({"person": ["Nobody"]}),
        answer({"city": ["Paris"]}),
        answer({}),
    ]
    assert [rewards(a, gold=[])[0] for a in answers] == [0.0, 0.0, 0.0, 0.0, 1.0]
