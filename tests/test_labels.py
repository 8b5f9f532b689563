"""Labels: what a model writes as a label's definition is read defensively."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacy_recot.labels import MAX_DEFINITION_CHARS, definition_prompt, read_definition


def test_the_prompt_shows_every_label_so_definitions_can_contrast_them():
    prompt = definition_prompt("person", ["politician", "person"])
    assert '"person"' in prompt and "politician, person" in prompt


@pytest.mark.parametrize(
    "answer,definition,repair",
    [
        ("A human being who is not a politician.", "A human being who is not a politician.", None),
        ("Person: a human being.", "a human being.", "trimmed"),
        ('"Definition: a named human."', "a named human.", "trimmed"),
        ("<think>people...</think>\nA named human.", "A named human.", "trimmed"),
        ("A named human.\n\nExamples: Obama, Merkel.", "A named human.", "trimmed"),
        ("```\nA named human.\n```", "A named human.", "trimmed"),
        ("", None, "unusable"),
        ("<think>the answer never comes", None, "unusable"),
        ("*** 42 ***", None, "unusable"),
    ],
)
def test_definitions_are_cleaned_and_what_was_done_is_said(answer, definition, repair):
    assert read_definition(answer, "person") == (definition, repair)


def test_a_long_definition_is_cut_at_a_sentence_end():
    first = "A human being, named in the text, who holds no political office. "
    text, repair = read_definition(first + "x" * MAX_DEFINITION_CHARS, "person")
    assert text == first.strip() and repair == "trimmed"


@given(st.text(max_size=600), st.text(min_size=1, max_size=30))
def test_any_answer_gives_a_short_definition_or_none(answer, label):
    text, repair = read_definition(answer, label)
    assert (text is None) == (repair == "unusable")
    if text is not None:
        assert text.strip() and "\n" not in text and len(text) <= MAX_DEFINITION_CHARS + 4
