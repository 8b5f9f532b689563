import json

import pytest

from spacy_recot.chunks import Chunk
from spacy_recot.tasks import (
    GNER_INSTRUCTION,
    make_entity_list_prompt,
    make_gner_prompt,
    make_recot_prompt,
)

# The instruction_inputs of GNER's own example record (src/gner_evaluator.py),
# minus its "else" label and "Dataset:" line, which the zero-shot sets do not use.
GNER_EXAMPLE = (
    "Please analyze the sentence provided, identifying the type of entity for each word on a token-by-token basis.\n"
    "Output format is: word_1(label_1), word_2(label_2), ...\n"
    "We'll use the BIO-format to label the entities, where:\n"
    "1. B- (Begin) indicates the start of a named entity.\n"
    "2. I- (Inside) is used for words within a named entity but are not the first word.\n"
    "3. O (Outside) denotes words that are not part of a named entity.\n"
    "\nUse the specific entity tags: location, person, organization and O.\n"
    "Sentence: This system was widely copied in various NATO forces ."
)


def test_gner_prompt_is_verbatim():
    chunk = Chunk.from_words("This system was widely copied in various NATO forces .".split())
    assert make_gner_prompt().render(chunk, ["location", "person", "organization"]) == GNER_EXAMPLE
    target = make_gner_prompt().render_target(chunk, [(7, 8, "organization")])
    assert target == "This(O) system(O) was(O) widely(O) copied(O) in(O) various(O) NATO(B-organization) forces(O) .(O)"


def test_recot_prompt_has_two_steps_and_descriptions():
    chunk = Chunk.from_words(["Obama", "won", "a", "Nobel", "Prize"])
    text = make_recot_prompt().render(chunk, ["person", "award"], {"award": "a prize or honour"})
    assert "Step 1" in text and "Step 2" in text
    assert "- award: a prize or honour" in text
    assert text.endswith("Sentence: Obama won a Nobel Prize")
    assert not text.startswith(GNER_INSTRUCTION)


def test_entity_list_prompt_target_is_json():
    chunk = Chunk.from_words(["Obama", "visited", "Paris"])
    prompt = make_entity_list_prompt()
    assert prompt.output_format == "entities"
    assert json.loads(prompt.render_target(chunk, [(0, 1, "person"), (2, 3, "location")])) == {
        "entities": {"person": ["Obama"], "location": ["Paris"]}
    }


# ReasoningNER's user turn for a CrossNER sentence, written out from
# rner/prompt.py + InputExample.to_prompt of HuiResearch/ReasoningIE.
REASONING_NER_EXAMPLE = """You are an excellent information extraction assistant. Please extract the corresponding entities from the following sentence based on the provided schema and return them in JSON format.

Note:
1) The schema specifies the list of entity types that can be extracted;
2) Only extract entities that are included in the schema.

Schema\uff1a
["location", "organisation", "person"]

Output format:
{
  "entities": {
    "label1": [
      "x1",
      "x2"
    ],
    "label2": [
      "x3"
    ]
  }
}

Sentence:
This system was widely copied in various NATO forces ."""


def test_reasoning_ner_prompt_is_verbatim():
    from spacy_recot.tasks import make_reasoning_ner_prompt

    chunk = Chunk.from_words("This system was widely copied in various NATO forces .".split())
    prompt = make_reasoning_ner_prompt()
    # Lower-cased, sorted, generic labels dropped, as ReasoningNER builds its schema.
    labels = ["Person", "misc", "organisation", "location", "else"]
    assert prompt.render(chunk, labels) == REASONING_NER_EXAMPLE
    assert prompt.schema(labels) == ["location", "organisation", "person"]
    target = prompt.render_target(chunk, [(7, 8, "Organisation")], "NATO is an organisation.")
    assert target == (
        '<think>\nNATO is an organisation.\n</think>\n{\n  "entities": {\n    "organisation": [\n      "NATO"\n    ]\n  }\n}'
    )


def test_reasoning_ner_prompt_for_untuned_models_shows_the_schema():
    from spacy_recot.tasks import make_reasoning_ner_prompt

    chunk = Chunk.from_words(["Paris"])
    prompt = make_reasoning_ner_prompt(example_labels="schema", drop_generic_labels=False)
    text = prompt.render(chunk, ["misc", "Location"], {"Location": "a place"})
    assert '"label1"' not in text
    assert '{\n  "entities": {\n    "location": [],\n    "misc": []\n  }\n}' in text
    assert "- Location: a place" in text
    assert text.endswith("Sentence:\nParis")
    with pytest.raises(ValueError, match="example_labels"):
        make_reasoning_ner_prompt(example_labels="labels")


def test_per_label_questions_ask_one_label_each():
    from spacy.util import registry

    chunk = Chunk.from_words(["Barack", "Obama", "visited", "Paris", "."])
    prompt = registry.misc.get("spacy_recot.ZeroShotJSONPrompt.v1")(questions="per_label")
    assert prompt.label_groups(["person", "location"]) == [["person"], ["location"]]
    text = prompt.render(chunk, ["location"])
    assert '["location"]' in text and "person" not in text and text.endswith("Barack Obama visited Paris .")
    assert registry.misc.get("spacy_recot.ZeroShotJSONPrompt.v1")().label_groups(["a", "b"]) == [["a", "b"]]
    # Generic labels the schema drops get no question of their own.
    dropping = registry.misc.get("spacy_recot.ZeroShotJSONPrompt.v1")(drop_generic_labels=True, questions="per_label")
    assert dropping.label_groups(["person", "misc"]) == [["person"]]
    with pytest.raises(ValueError, match="prompt.questions"):
        registry.misc.get("spacy_recot.ZeroShotJSONPrompt.v1")(questions="each")
