import json
from pathlib import Path

import pytest
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from spacy_recot.conll import ConllFormatError, convert, labels_file, read_conll

from .conftest import DATA, requires_data


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_word_first_and_tag_first_layouts(tmp_path):
    a = write(tmp_path, "a.txt", "Obama\tB-person\nwon\tO\n\nParis\tB-loc\n")
    b = write(tmp_path, "b.bio", "B-person\tObama\nO\twon\n\nB-loc\tParis\n")
    for path in (a, b):
        sents = list(read_conll(path))
        assert [s.words for s in sents] == [["Obama", "won"], ["Paris"]]
        assert [s.tags for s in sents] == [["B-person", "O"], ["B-loc"]]


def test_malformed_line_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.txt", "Obama\tB-person\nwon\tO\nParis\tLOC\n")
    with pytest.raises(ConllFormatError, match=r"bad.txt:3: expected 'word<TAB>tag'.*'LOC'"):
        list(read_conll(path))
    path = write(tmp_path, "one.txt", "Obama\tB-person\nlonely\n")
    with pytest.raises(ConllFormatError, match=r"one.txt:2: .*one column"):
        list(read_conll(path))


def test_convert_with_label_map_and_orphans(tmp_path):
    path = write(tmp_path, "x.txt", "Python\tB-programlang\nis\tO\ncool\tI-misc\nstuff\tI-misc\n")
    mapping = write(tmp_path, "map.json", json.dumps({"programlang": "programming language", "misc": "O"}))
    out = tmp_path / "x.spacy"
    n, labels, counts = convert(path, out, label_map_path=mapping)
    (doc,) = DocBin().from_disk(out).get_docs(Vocab())
    assert n == 1 and labels == ["programming language"]
    assert [(e.text, e.label_) for e in doc.ents] == [("Python", "programming language")]
    assert json.loads(labels_file(out).read_text()) == ["programming language"]


def test_orphan_inside_repaired(tmp_path):
    path = write(tmp_path, "o.txt", "a\tO\nb\tI-x\nc\tI-y\n")
    n, labels, counts = convert(path, tmp_path / "o.spacy")
    (doc,) = DocBin().from_disk(tmp_path / "o.spacy").get_docs(Vocab())
    assert [(e.text, e.label_) for e in doc.ents] == [("b", "x"), ("c", "y")]
    assert counts["orphan_inside_repaired"] == 2


def test_labels_outside_label_txt_fail(tmp_path):
    path = write(tmp_path, "test.txt", "a\tB-x\n")
    write(tmp_path, "label.txt", "y\n")
    with pytest.raises(ConllFormatError, match=r"\['x'\] are not in .*label.txt"):
        convert(path, tmp_path / "t.spacy")


@requires_data()
def test_crossner_with_label_map_matches_gner_labels(tmp_path):
    mapping = Path(__file__).resolve().parents[1] / "configs" / "label_maps" / "crossner.json"
    n, labels, _ = convert(DATA / "crossner" / "ai" / "test.txt", tmp_path / "ai.spacy", label_map_path=mapping)
    gner = (DATA / "gner" / "crossner_ai" / "label.txt").read_text().split("\n")
    assert n == 431
    assert set(labels) == {label for label in gner if label}


def test_a_byte_order_mark_is_not_part_of_the_first_word(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffBarack\tB-person\nObama\tI-person\n".encode())
    (label_path := tmp_path / "label.txt").write_bytes("\ufeffperson\n".encode())
    assert [s.words for s in read_conll(path)] == [["Barack", "Obama"]]
    n, labels, _ = convert(path, tmp_path / "bom.spacy", labels_path=label_path)
    (doc,) = DocBin().from_disk(tmp_path / "bom.spacy").get_docs(Vocab())
    assert labels == ["person"] and [e.text for e in doc.ents] == ["Barack Obama"]


def test_bad_limits_labels_and_outputs_are_refused(tmp_path):
    path = write(tmp_path, "x.txt", "a\tB-x\n\nb\tO\n")
    with pytest.raises(ValueError, match="limit must be 0"):
        convert(path, tmp_path / "x.spacy", limit=-1)  # it dropped the last sentence
    with pytest.raises(ConllFormatError, match="missing.txt: no such label file"):
        convert(path, tmp_path / "x.spacy", labels_path=tmp_path / "missing.txt")
    (tmp_path / "folder.spacy").mkdir()
    with pytest.raises(ValueError, match="folder.spacy is a folder"):
        convert(path, tmp_path / "folder.spacy")
