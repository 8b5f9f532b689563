"""training/protocol.py: the ablation table from evaluation results (per-set
paired bootstrap against the zero-shot row, the precision each row was
evaluated in), and the clear errors when its inputs are missing."""

import json
import sys

import pytest
import spacy
import typer
from spacy.tokens import DocBin

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "training"))

SETS = ("crossner_politics", "mit-movie")
# Per sentence: its text and gold entities (character offsets).
GOLD = [
    ("Obama met Merkel in Berlin .", [(0, 5, "politician"), (10, 16, "politician"), (20, 26, "location")]),
    ("The SPD won the election .", [(4, 7, "political party")]),
    ("Labour lost votes in Leeds .", [(0, 6, "political party"), (21, 26, "location")]),
    ("Nothing here .", []),
]


def gold_sets(path):
    nlp = spacy.blank("en")
    for name in SETS:
        docs = DocBin()
        for text, ents in GOLD:
            doc = nlp(text)
            doc.ents = [doc.char_span(s, e, label=label) for s, e, label in ents]
            docs.add(doc)
        (path / name).mkdir(parents=True)
        docs.to_disk(path / name / "test.spacy")


def result(predictions, dtype="torch.float32"):
    """A benchmarks/zero_shot.py result with the same predictions on both sets."""
    tp = sum(len(set(map(tuple, p)) & set(g)) for p, (_, g) in zip(predictions, GOLD))
    n_pred, n_gold = sum(map(len, predictions)), sum(len(g) for _, g in GOLD)
    prec, rec = tp / max(n_pred, 1), tp / n_gold
    f = 2 * prec * rec / (prec + rec) if tp else 0.0
    scores = {"ents_p": prec, "ents_r": rec, "ents_f": f, "normalized": {"f": f}, "seconds": 1.0, "counts": {}}
    return {"dtype": dtype, "datasets": {name: {**scores, "predictions": predictions} for name in SETS}}


@pytest.fixture
def protocol_dirs(tmp_path):
    data, work, results = tmp_path / "gner", tmp_path / "work", tmp_path / "results"
    gold_sets(data)
    work.mkdir()
    results.mkdir()
    (work / "settings.json").write_text(json.dumps({"held_out": ["politics"]}))
    # The zero-shot row finds half the entities; the tuned row all of them.
    zero = [[[0, 5, "politician"]], [], [[0, 6, "political party"]], []]
    tuned = [[list(e) for e in g] for _, g in GOLD]
    (results / "zero_shot.json").write_text(json.dumps(result(zero)))
    (results / "sft_answers_politics.json").write_text(json.dumps(result(tuned, "torch.bfloat16")))
    (results / "times.json").write_text(json.dumps({"train_sft_answers_politics": 120.0}))
    return data, work, results


def run_report(data, work, results):
    import protocol

    protocol.report(work=work, results=results, data=data, samples=200)


def test_report_table(protocol_dirs, capsys):
    data, work, results = protocol_dirs
    run_report(data, work, results)
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split(" | ")[1]: line for line in lines if line.startswith("| politics")}
    assert set(rows) == {"zero_shot", "sft_answers"}
    # F1 0.5 -> 1.0 on each set; every resample of four sentences agrees on the sign.
    assert "| +50.0 [" in rows["sft_answers"]
    assert "| bfloat16 | 2 | - |" in rows["sft_answers"]
    assert "| +0.0 [+0.0, +0.0] | +0.0 [+0.0, +0.0] | zero_shot | float32 | - | - |" in rows["zero_shot"]
    table = json.loads((results / "protocol.json").read_text())
    diffs = table["folds"]["politics"]["sft_answers_politics"]["differences"]
    assert set(diffs) == {*SETS, "pooled"}
    for d in diffs.values():
        assert d["difference"] == pytest.approx(0.5)
        assert 0 < d["interval"][0] <= d["interval"][1]
        assert d["changed_docs"] >= 2


def test_report_reads_committed_settings(protocol_dirs):
    """On a fresh clone there is no --work folder: the committed table's settings do."""
    data, work, results = protocol_dirs
    run_report(data, work, results)
    (work / "settings.json").unlink()
    run_report(data, work, results)
    assert "sft_answers_politics" in json.loads((results / "protocol.json").read_text())["folds"]["politics"]
    (results / "protocol.json").unlink()
    with pytest.raises(typer.BadParameter, match="settings.json.*protocol.json"):
        run_report(data, work, results)


def test_report_without_zero_shot(protocol_dirs):
    data, work, results = protocol_dirs
    (results / "zero_shot.json").unlink()
    with pytest.raises(typer.BadParameter, match="zero_shot.json is missing"):
        run_report(data, work, results)


def test_report_shipped_definitions(protocol_dirs, capsys):
    """The shipped adapter with its own label definitions, against it without,
    on MIT-Movie: a table of its own, and a section of protocol.json."""
    data, work, results = protocol_dirs
    half = [[[0, 5, "politician"]], [], [[0, 6, "political party"]], []]
    everything = [[list(e) for e in g] for _, g in GOLD]
    (results / "shipped.json").write_text(json.dumps(result(everything)))
    run_report(data, work, results)
    assert "shipped adapter on MIT-Movie" not in capsys.readouterr().out
    (results / "shipped_definitions.json").write_text(json.dumps(result(half)))
    run_report(data, work, results)
    lines = capsys.readouterr().out.splitlines()
    assert "| without definitions | 100.0 / 100.0 / 100.0 | - | - |" in lines
    defined = next(line for line in lines if line.startswith("| with its own label definitions"))
    assert "| 100.0 / 33.3 / 50.0 | -50.0 [" in defined
    section = json.loads((results / "protocol.json").read_text())["shipped_definitions"]
    # F1 1.0 -> 0.5 (two of six entities, none wrong).
    assert section["difference"]["difference"] == pytest.approx(-0.5)
    assert section["difference"]["interval"][1] < 0
    assert set(section["scores"]) == {"mit-movie"}
