"""Forced-word BIO decoding: the parallel fixed point equals token-by-token constrained greedy."""

import pytest
import spacy
import torch

from spacy_recot.chunks import Chunk
from spacy_recot.generation.bio_forced import (
    WordChoices,
    answer_text,
    constrained_generate,
    forced_decode,
    tag_candidates,
)
from spacy_recot.tasks import make_gner_prompt, read_bio
from spacy_recot.tasks.bio_tags import parse_bio, tags_to_spans

from ..conftest import LABELS, TRAIN_SENTENCES, requires_data

SENTENCES = [words for words, _ in TRAIN_SENTENCES] + [
    "The Nobel Prize in Physics went to Marie Curie in 1903 .".split(),
    "Kraftwerk released Autobahn on Philips Records , produced by Conny Plank .".split(),
    ["Short"],
    "A sentence with an odd word : naïve café ( and brackets ) .".split(),
]
MANY_LABELS = ["person", "location", "organization", "award", "album", "record label", "misc"]


def _load(path, dtype=torch.float32):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    return AutoModelForSeq2SeqLM.from_pretrained(path, dtype=dtype).eval(), AutoTokenizer.from_pretrained(path)


def _batch(tokenizer, sentences, labels):
    prompt = make_gner_prompt()
    sources = [prompt.render(Chunk.from_words(words), labels) for words in sentences]
    enc = tokenizer(sources, return_tensors="pt", padding=True)
    return enc, [WordChoices.build(tokenizer, words, labels) for words in sentences]


def test_tag_candidates_allow_inside_only_after_the_same_type():
    assert tag_candidates(["a", "b"], "O") == ["O", "B-a", "B-b"]
    assert tag_candidates(["a", "b"], "B-b") == ["O", "B-a", "B-b", "I-b"]
    assert tag_candidates(["a", "b"], "I-a") == ["O", "B-a", "B-b", "I-a"]


def test_pieces_tokenize_like_the_whole_answer(t5_tokenizer):
    # The answer is built word by word; the session's T5 tokenizer splits at
    # spaces first, so that is also how it tokenizes the whole answer.
    for words, tags in TRAIN_SENTENCES:
        choices = WordChoices.build(t5_tokenizer, words, LABELS)
        whole = t5_tokenizer(" ".join(f"{w}({t})" for w, t in zip(words, tags)))["input_ids"]
        assert choices.sequence(tags) == whole


def test_allowed_walks_the_constraint(t5_tokenizer):
    words, tags = TRAIN_SENTENCES[0]
    choices = WordChoices.build(t5_tokenizer, words, LABELS)
    ids = choices.sequence(tags)
    # Every token of a valid answer is allowed after its prefix, and then only the end.
    for t in range(len(ids)):
        assert ids[t] in choices.allowed(ids[:t])
    assert choices.allowed(ids) == []
    # Where the first word's tags part, only the tags legal at the start
    # continue: O and B-x, not I-x.
    first_word = choices.pieces[0]
    legal = [first_word[t] for t in tag_candidates(LABELS, "O")]
    fork = next(k for k in range(len(legal[0])) if len({seq[k] for seq in legal}) > 1)
    assert set(choices.allowed(list(legal[0][:fork]))) == {seq[fork] for seq in legal}


@pytest.mark.parametrize("fixture,labels", [("tiny_t5_dir", LABELS), ("tiny_t5_dir", MANY_LABELS)])
def test_forced_equals_constrained_greedy(request, fixture, labels):
    model, tokenizer = _load(request.getfixturevalue(fixture))
    enc, choices = _batch(tokenizer, SENTENCES, labels)
    tags, stats = forced_decode(model, enc, choices)
    out = constrained_generate(model, enc, choices)
    expected = tokenizer.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    got = [answer_text(c, t, tokenizer) for c, t in zip(choices, tags)]
    assert got == expected
    assert stats["converged"] == len(SENTENCES)
    # Fewer decoder passes than generate's steps: that is the point.
    assert stats["passes"] < out.shape[1] - 1
    # Random weights choose entities too, so the test covers B-/I- decisions.
    assert any(t != "O" for row in tags for t in row)


def test_forced_answers_read_without_repairs(trained_t5_dir):
    model, tokenizer = _load(trained_t5_dir)
    sentences = [words for words, _ in TRAIN_SENTENCES]
    enc, choices = _batch(tokenizer, sentences, LABELS)
    tags, _ = forced_decode(model, enc, choices)
    for (words, gold), row, c in zip(TRAIN_SENTENCES, tags, choices):
        assert row == gold  # the trained model's answer
        chunk = Chunk.from_words(words)
        reading = read_bio(chunk, answer_text(c, row, tokenizer), LABELS)
        assert not {k: v for k, v in reading.counts.items() if v}
        assert [s[2] for s in reading.spans] == [t[2:] for t in gold if t.startswith("B-")]


def test_valid_bio_for_every_row_even_when_stopped_early(tiny_t5_dir):
    model, tokenizer = _load(tiny_t5_dir)
    enc, choices = _batch(tokenizer, SENTENCES, MANY_LABELS)
    tags, stats = forced_decode(model, enc, choices, max_passes=1)
    assert stats["passes"] == 1
    for row, c in zip(tags, choices):
        words, parsed = parse_bio(answer_text(c, row, tokenizer))
        assert len(parsed) == len(c.words)
        previous = "O"
        for tag in row:
            assert tag in tag_candidates(MANY_LABELS, previous)
            previous = tag
        assert all(0 <= s < e <= len(row) for s, e, _ in tags_to_spans(row))


TEXTS = [" ".join(words) for words in SENTENCES]


def forced_nlp(path, decoding="forced"):
    """The component on a tiny T5 with HFSeq2Seq.v3, in float32."""
    nlp = spacy.blank("en")
    model = {"@misc": "spacy_recot.HFSeq2Seq.v3", "name_or_path": str(path), "dtype": "float32", "decoding": decoding}
    nlp.add_pipe("recot_ner", config={"labels": MANY_LABELS, "model": model})
    nlp.initialize()
    return nlp


def ents(docs):
    return [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]


@pytest.mark.parametrize("decoding", ["forced", "constrained"])
def test_component_decodes_bio_by_construction(tiny_t5_dir, decoding):
    nlp = forced_nlp(tiny_t5_dir, decoding)
    for doc in nlp.pipe(TEXTS):
        counts = doc.user_data["recot"]["recot_ner"]["counts"]
        # Words copied exactly, tags valid: nothing to repair, nothing dropped.
        assert not {k: v for k, v in counts.items() if k != "merged_across_chunks"}, counts
    if decoding == "forced":
        stats = nlp.get_pipe("recot_ner").model.stats
        assert stats["converged"] == len(TEXTS)


def test_forced_and_constrained_components_agree(tiny_t5_dir):
    results = [ents(forced_nlp(tiny_t5_dir, decoding).pipe(TEXTS)) for decoding in ("forced", "constrained")]
    assert results[0] == results[1]


def test_unknown_decoding_is_refused():
    from spacy_recot.backends import make_hf_seq2seq_v3

    with pytest.raises(ValueError, match="model.decoding"):
        make_hf_seq2seq_v3("x", decoding="beam")


@requires_data()
def test_forced_equals_constrained_on_real_sentences(tiny_t5_dir):
    """Longer real sentences and a real label set (CrossNER music, 13 labels)."""
    from spacy_recot.conll import read_conll

    from ..conftest import GNER

    sentences = [s.words for s in read_conll(GNER / "crossner_music" / "test.txt")][:6]
    labels = ["music genre", "song", "band", "album", "musical artist", "musical instrument", "award"]
    model, tokenizer = _load(tiny_t5_dir)
    enc, choices = _batch(tokenizer, sentences, labels)
    tags, stats = forced_decode(model, enc, choices)
    out = constrained_generate(model, enc, choices)
    expected = tokenizer.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    assert [answer_text(c, t, tokenizer) for c, t in zip(choices, tags)] == expected


def test_tag_head_paths_agree(tiny_t5_dir):
    """The T5 path (output layer on the tag tokens only, cache reused) scores
    as the full forward that other seq2seq models get."""
    from spacy_recot.generation.bio_forced import TagHead

    model, tokenizer = _load(tiny_t5_dir)
    enc, choices = _batch(tokenizer, SENTENCES[:2], LABELS)
    states = model.get_encoder()(**enc).last_hidden_state
    tokens = sorted({t for c in choices for t in c.tokens()})
    fast, full = TagHead(model, tokens), TagHead(model, tokens)
    full.t5 = False
    length = int(enc["attention_mask"][0].sum())
    first = choices[0].sequence(["O"] * len(choices[0].words))
    changed = choices[0].sequence(["B-person", "I-person", "O", "B-location", "O"])
    with torch.inference_mode():
        for head in (fast, full):
            head.scores = [head.start(states[:1, :length], first), head.resume(changed, 2)]
    for a, b in zip(fast.scores, full.scores):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-4)


def test_forced_pipeline_round_trips(tiny_t5_dir, tmp_path):
    nlp = forced_nlp(tiny_t5_dir)
    before = ents(nlp.pipe(TEXTS))
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("recot_ner").model.decoding == "forced"
    assert ents(loaded.pipe(TEXTS)) == before
