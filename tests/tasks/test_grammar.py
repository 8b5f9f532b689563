"""Constrained decoding: grammars built from the text, enforced on a real (tiny) Qwen3."""

import json
from collections import Counter

import pytest

from spacy_recot.chunks import Chunk
from spacy_recot.tasks.grammar import answer_schema, candidate_entities
from spacy_recot.tasks.json_answer import parse_entity_list
from spacy_recot.tasks.think import split_rationale

from ..conftest import LABELS, reasoning_requests


def test_candidates_are_exact_substrings_of_the_text():
    text = 'He said "Hi" to  Dr. Who , then left.'
    words = ["He", "said", '"', "Hi", '"', "to", "Dr.", "Who", ",", "then", "left", "."]
    offsets, pos = [], 0
    for word in words:
        pos = text.index(word, pos)
        offsets.append((pos, pos + len(word)))
        pos += len(word)
    chunk = Chunk(text=text, words=words, offsets=offsets)
    cands = candidate_entities(chunk, max_words=3)
    assert all(c in text for c in cands)
    assert "Dr. Who" in cands and "to  Dr." in cands  # the text's own spacing
    # No candidate starts or ends with a word without letters or digits.
    assert not any(c.startswith(('"', ",", ".")) or c.endswith(('"', ",")) for c in cands)
    assert max(len(c.split()) for c in cands) <= 3
    assert len(cands) == len(set(cands))


def test_answer_schema():
    schema = answer_schema(["person", "location"], ["Obama", "Paris"])
    inner = schema["properties"]["entities"]
    assert list(inner["properties"]) == ["person", "location"]
    assert inner["additionalProperties"] is False
    assert inner["properties"]["person"]["items"]["enum"] == ["Obama", "Paris"]
    assert answer_schema(["x"], [])["properties"]["entities"]["properties"]["x"]["maxItems"] == 0


SENTENCES = [
    "Barack Obama visited Paris .".split(),
    'The " quoted \\ word " and Zürich are here , 42 times .'.split(),
    "Angela Merkel met Macron in Berlin .".split(),
]


def test_random_model_answers_are_always_valid(tiny_qwen3_dir):
    """An untrained model writes noise; under the grammar every answer is JSON
    with offered labels only and entities copied from the text."""
    from spacy_recot.backends import make_hf_causal

    backend = make_hf_causal(
        str(tiny_qwen3_dir),
        constrained=True,
        thinking=False,
        generation={"max_new_tokens": 120, "do_sample": True, "temperature": 1.5, "top_k": 0},
    )
    backend.load()
    requests = reasoning_requests(SENTENCES * 3)
    import torch

    torch.manual_seed(0)
    outputs = backend(requests)
    assert len(set(outputs)) > 3  # sampled: the rows differ
    complete = 0
    for request, output in zip(requests, outputs):
        _, answer = split_rationale(output)
        counts = Counter()
        _, items = parse_entity_list(output, LABELS, counts)
        assert not counts["unknown_label"] and not counts["unparseable"], output
        text = request.chunk.text
        assert all(entity in text for entity, _ in items)
        if answer.strip() and counts["json_repaired"] == 0:
            # Finished within the token budget: the JSON itself is complete.
            value = json.loads(answer.strip())
            assert set(value) == {"entities"} and set(value["entities"]) <= set(LABELS)
            complete += 1
    assert complete >= 3


def test_trained_model_unchanged_under_the_grammar(trained_qwen3_dir):
    """A model that already answers well writes the same answer, reasoning included."""
    from spacy_recot.backends import make_hf_causal

    free = make_hf_causal(str(trained_qwen3_dir), generation={"max_new_tokens": 120, "do_sample": False})
    free.load()
    bound = make_hf_causal(
        str(trained_qwen3_dir), constrained=True, generation={"max_new_tokens": 120, "do_sample": False}
    )
    bound.load()
    requests = reasoning_requests(SENTENCES[::2])
    free_out, bound_out = free(requests), bound(requests)
    assert bound_out == free_out
    assert bound_out[0].startswith("<think>\nBarack Obama is a person.")


def test_constrained_backend_only_takes_entity_prompts(tiny_qwen3_dir):
    import spacy

    with pytest.raises(
        ValueError, match="asks for 'bio' output, but the model backend .* writes only 'entities' output"
    ):
        spacy.blank("en").add_pipe(
            "recot_ner",
            config={
                "labels": LABELS,
                "model": {"@misc": "spacy_recot.HFCausal.v1", "name_or_path": str(tiny_qwen3_dir), "constrained": True},
                "prompt": {"@misc": "spacy_recot.ReCoTPrompt.v1"},
            },
        )


@pytest.mark.parametrize(
    "mode,answer,ok",
    [
        ("optional", '{"entities": {"person": ["Barack Obama"]}}', True),
        (
            "optional",
            '<think>\nObama is a person.\n</think>\n{"entities": {"location": ["Paris"], "person": []}}',
            True,
        ),
        ("optional", 'Sure! {"entities": {}}', False),  # free text outside a think block
        ("optional", '{"entities": {"person": ["Barack"], "animal": ["Paris"]}}', False),  # label not offered
        ("optional", '{"entities": {"person": ["Obama visited"]}}', True),  # a word n-gram of the text
        ("optional", '{"entities": {"person": ["Michelle Obama"]}}', False),  # not in the text
        ("optional", '{"entities": {"person": ["barack obama"]}}', False),  # not as written
        ("opened", 'Obama is a person.\n</think>\n{"entities": {"person": ["Barack Obama"]}}', True),
        ("opened", '{"entities": {"person": ["Barack Obama"]}}', False),  # the block must be closed
        ("off", '<think>\n</think>\n{"entities": {}}', False),
        ("off", '{ "entities" : { } }', True),
    ],
)
def test_grammar_accepts_exactly_the_valid_answers(bpe_tokenizer, mode, answer, ok):
    import xgrammar

    from spacy_recot.generation.grammar import EntityGrammar

    constraint = EntityGrammar(bpe_tokenizer, vocab_size=len(bpe_tokenizer), thinking=mode)
    (request,) = reasoning_requests([SENTENCES[0]])
    matcher = xgrammar.GrammarMatcher(constraint.compiler.compile_grammar(constraint.grammar(request)))
    accepted = matcher.accept_string(answer) and matcher.is_completed()
    assert accepted == ok


def test_entity_rules_have_the_language_of_the_candidate_enum(bpe_tokenizer):
    """The grammar writes the entity strings as a walk along the words (fast to
    compile); its language is the enum of `candidate_entities`: the same token
    masks at every step of random walks, and the same verdict on every string."""
    import random

    import torch
    import xgrammar

    from spacy_recot.chunks import Request
    from spacy_recot.generation.grammar import EntityGrammar
    from spacy_recot.tasks.grammar import EntityListConstraint

    # ASCII only: the session tokenizer cannot write every letter (é was checked with Qwen's).
    chunk = Chunk.from_text('He said "Hi \\ there" to  Dr. Who , nee U , then left .')
    words = chunk.words
    constraint = EntityGrammar(bpe_tokenizer, vocab_size=len(bpe_tokenizer), max_entity_words=4, thinking="off")
    request = Request(
        "x", chunk, ["person", "location"], constraint=EntityListConstraint(("person", "location"), chunk)
    )
    enum = xgrammar.Grammar.from_json_schema(
        json.dumps(answer_schema(request.schema, candidate_entities(chunk, 4))),
        any_whitespace=True,
        max_whitespace_cnt=12,
        any_order=True,
    )
    compiled = [constraint.compiler.compile_grammar(g) for g in (enum, constraint.grammar(request))]
    candidates = candidate_entities(chunk, 4)
    ngrams = {chunk.slice_text(i, j) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
    for string in sorted(ngrams) + ["Dr. Who ,", "he said", ""]:
        answer = json.dumps({"entities": {"person": [string]}}, ensure_ascii=False)
        verdicts = []
        for c in compiled:
            matcher = xgrammar.GrammarMatcher(c)
            verdicts.append(matcher.accept_string(answer) and matcher.is_completed())
        assert verdicts == [string in candidates] * 2, string
    rng = random.Random(0)
    vocab = len(bpe_tokenizer)
    bits = torch.arange(32, dtype=torch.int32)
    for _ in range(20):
        matchers = [xgrammar.GrammarMatcher(c) for c in compiled]
        masks = [xgrammar.allocate_token_bitmask(1, vocab) for _ in compiled]
        for _ in range(80):
            for m, b in zip(matchers, masks):
                m.fill_next_token_bitmask(b)
            assert torch.equal(masks[0], masks[1])
            allowed = ((masks[0][0].unsqueeze(-1) >> bits) & 1).bool().reshape(-1)[:vocab].nonzero().squeeze(1)
            token = allowed[rng.randrange(len(allowed))].item()
            assert all(m.accept_token(token) for m in matchers)
            if matchers[0].is_terminated():
                break
