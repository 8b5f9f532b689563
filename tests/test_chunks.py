import spacy

from spacy_recot.chunks import Chunk, doc_words, sentence_starts, split_chunk


def test_doc_words_skip_whitespace_tokens():
    nlp = spacy.blank("en")
    doc = nlp("Hello  world .\n\nBye")
    chunk = doc_words(doc)
    assert chunk.words == ["Hello", "world", ".", "Bye"]
    assert [doc.text[s:e] for s, e in chunk.offsets] == chunk.words


def test_split_by_words_respects_budget_and_keeps_offsets():
    chunk = Chunk.from_words([f"w{i}" for i in range(10)])
    pieces = split_chunk(chunk, [1.0] * 10, 3.0)
    assert [len(p.words) for p in pieces] == [3, 3, 3, 1]
    assert sum((p.words for p in pieces), []) == chunk.words
    assert all(chunk.text[s:e] == w for p in pieces for w, (s, e) in zip(p.words, p.offsets))


def test_split_prefers_sentence_boundaries():
    chunk = Chunk.from_words("a b c . d e . f g h i j k .".split())
    pieces = split_chunk(chunk, [1.0] * len(chunk.words), 7.0, boundaries=[4, 7])
    assert [p.words for p in pieces][:2] == [["a", "b", "c", ".", "d", "e", "."], ["f", "g", "h", "i", "j", "k", "."]]


def test_oversized_word_gets_its_own_chunk():
    chunk = Chunk.from_words(["a", "huge", "b"])
    pieces = split_chunk(chunk, [1.0, 10.0, 1.0], 2.0)
    assert [p.words for p in pieces] == [["a"], ["huge"], ["b"]]


def test_sentence_starts():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp("One two. Three four.")
    assert sentence_starts(doc, doc_words(doc)) == [0, 3]
    assert sentence_starts(spacy.blank("en")("One two."), doc_words(doc)) is None


def test_windows_overlap_and_cover_every_word():
    chunk = Chunk.from_words([f"w{i}" for i in range(20)])
    pieces = split_chunk(chunk, [1.0] * 20, 6.0, overlap=2)
    assert all(len(p.words) <= 6 for p in pieces)
    starts = [chunk.words.index(p.words[0]) for p in pieces]
    assert starts == [0, 4, 8, 12, 16]  # each window shares 2 words with the one before
    assert set(sum((p.words for p in pieces), [])) == set(chunk.words)
    # Sentences that fit are not windowed (no overlap across sentence boundaries).
    sents = split_chunk(chunk, [1.0] * 20, 6.0, boundaries=[5, 10, 15], overlap=2)
    assert [len(p.words) for p in sents] == [5, 5, 5, 5]


def test_paragraph_breaks_keep_sentence_starts():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp("First sentence here.\n\nSecond one is here.\n\nThird one.")
    assert sentence_starts(doc, doc_words(doc)) == [0, 4, 9]


def test_each_window_reaches_past_the_one_before():
    from spacy_recot.chunks import _windows

    windows = _windows([0.5, 0.5, 0.6, 0.3], 0, 4, 1.0, 8)
    assert all(e2 > e1 for (_, e1), (_, e2) in zip(windows, windows[1:]))
    assert windows[0][0] == 0 and windows[-1][1] == 4
