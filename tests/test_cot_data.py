"""NER-CoT data: the validation rules, resumable stages, the stratified GRPO sample."""

import json

import pytest

from spacy_recot import cot_chains as cc
from spacy_recot import cot_data as cd
from spacy_recot.backends import make_hf_causal_v2

from .conftest import DATA, requires_data

SENT = "Barack Obama visited Paris ."


def rec(cot="Barack Obama is a person. Paris is a location.", answer=None, **kw):
    answer = (
        answer
        if answer is not None
        else '<think>x</think>\n{"entities": {"person": ["Barack Obama"], "location": ["Paris"]}}'
    )
    base = {
        "guid": "g1",
        "sentence": SENT,
        "schema": ["person", "location"],
        "cot": cot,
        "answer": answer,
        "source": "t",
    }
    base["gold"] = [{"text": "Barack Obama", "label": "person"}, {"text": "Paris", "label": "location"}]
    base.update(kw)
    return base


@pytest.mark.parametrize(
    "record,reason",
    [
        (rec(), None),
        (rec(cot=" "), "no_chain"),
        (rec(answer='<think>x</think>{"entities": {"person": ["Barack Obama"]'), "json_invalid"),
        (rec(answer='<think>x</think>["Barack Obama"]'), "json_not_an_entity_object"),
        (rec(answer='<think>x</think>{"entities": {"city": ["Paris"]}}'), "label_not_in_schema"),
        (rec(answer='<think>x</think>{"entities": {"person": ["Michelle Obama"]}}'), "entity_not_in_sentence"),
        (rec(cot="Barack Obama is a person."), "chain_misses_an_entity"),
    ],
)
def test_validation_rules(record, reason):
    assert cc.check_record(record) == reason


def test_match_gold_and_ner_cot_files():
    partial = rec(answer='<think>x</think>{"entities": {"person": ["Barack Obama"]}}', cot="Barack Obama is a person.")
    assert cc.check_record(partial) is None
    assert cc.check_record(partial, match_gold=True) == "differs_from_gold"
    given = {
        "guid": "x",
        "sentence": SENT,
        "schema": ["person"],
        "cot": "Obama.",
        "entities": [{"text": "Obama", "label": "person"}],
    }
    assert cc.check_record(given) is None


def test_gold_answer_keeps_the_chain_and_answers_with_the_gold_entities(tmp_path):
    # The teacher's JSON missed Paris, but its chain names both gold entities: kept, answered with gold.
    partial = rec(answer='<think>x</think>{"entities": {"person": ["Barack Obama"]}}')
    cut = rec(guid="g2", answer="<think>Barack Obama is a person. Paris is", cot="Barack Obama is a person. Paris is")
    thin = rec(guid="g3", cot="Barack Obama is a person.")
    counts = cc.validate([partial, cut, thin], tmp_path / "ok.jsonl", tmp_path / "bad.jsonl", gold_answer=True)
    assert counts == {"kept": 1, "dropped_no_chain": 1, "dropped_chain_misses_an_entity": 1}
    (kept,) = cd.read_stage(tmp_path / "ok.jsonl")
    assert kept["entities"] == partial["gold"] and "answer" not in kept and kept["cot"] == partial["cot"]


def test_read_ner_cot_public_format(tmp_path):
    path = tmp_path / "ner_cot.json"
    rows = [
        {
            "guid": "1",
            "dataset": "conll",
            "sentence": SENT,
            "schema": ["person"],
            "cot": "c",
            "entities": {"person": ["Barack Obama"]},
        },
        {
            "guid": "2",
            "dataset": "conll",
            "sentence": SENT,
            "schema": '["location"]',
            "cot": "c",
            "entities": [{"text": "Paris", "label": "location"}],
        },
    ]
    path.write_text(json.dumps(rows))
    records = list(cd.read_ner_cot(path))
    assert records[0]["entities"] == [{"text": "Barack Obama", "label": "person"}] and records[0]["source"] == "conll"
    assert records[1]["schema"] == ["location"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence": "a"}\n{oops\n')
    with pytest.raises(cd.CoTDataError, match="bad.jsonl:2"):
        list(cd.read_ner_cot(bad))


def test_teach_is_resumable_after_a_crash(tmp_path, trained_qwen3_dir):
    teacher = make_hf_causal_v2(str(trained_qwen3_dir), max_new_tokens=40)
    records = [dict(rec(), guid=f"g{i}") for i in range(5)]
    calls = []

    def crashing(requests):
        calls.append(len(requests))
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second batch
        return teacher(requests)

    out = tmp_path / "annotated.jsonl"
    with pytest.raises(KeyboardInterrupt):
        cc.teach(records, out, crashing, batch_size=2, show_progress=False)
    assert [r["guid"] for r in cd.read_stage(out)] == ["g0", "g1"]
    # A line cut off by a crash is dropped; the rest resumes.
    out.write_text(out.read_text() + '{"guid": "g2", "sent')
    counts = cc.teach(records, out, teacher, batch_size=2, show_progress=False)
    assert counts["already_done"] == 2 and counts["annotated"] == 3
    done = cd.read_stage(out)
    assert [r["guid"] for r in done] == ["g0", "g1", "g2", "g3", "g4"]
    assert all("answer" in r and "cot" in r for r in done)


def test_judge_scores_and_threshold(tmp_path, trained_qwen3_dir):
    backend = make_hf_causal_v2(str(trained_qwen3_dir), max_new_tokens=8)
    backend.load()
    records = [dict(rec(), guid=f"g{i}", entities=[{"text": "Paris", "label": "location"}]) for i in range(3)]
    counts = cc.judge(records, tmp_path / "j.jsonl", tmp_path / "r.jsonl", backend, threshold=0, show_progress=False)
    # A tiny model is no judge: its answers hold no score, and such records are dropped and counted.
    assert sum(counts.values()) == 3
    assert counts["kept"] + counts["dropped_judge_unparseable"] == 3
    assert cc.parse_score("<think>hmm 3 things</think> 9") == 9
    assert cc.parse_score("Score: 10/10") == 10 and cc.parse_score("none") is None


def test_stratified_sample_caps_sets_and_leaves_out_evaluation_sets():
    records = [{"guid": f"a{i}", "source": "conll2003"} for i in range(100)]
    records += [{"guid": f"b{i}", "source": "ontonotes"} for i in range(30)]
    records += [{"guid": f"c{i}", "source": "mit-movie"} for i in range(50)]
    records += [{"guid": f"d{i}", "source": "ai"} for i in range(50)]  # CrossNER's AI domain
    sample, report = cd.stratified_sample(records, num_samples=40, max_count=60, seed=1)
    assert len(sample) == 40 and sorted(report["excluded_evaluation_sets"]) == ["ai", "mit-movie"]
    assert report["taken"] == {"conll2003": 27, "ontonotes": 13}  # 60 : 30 after the cap
    both, report = cd.stratified_sample(records, num_samples=1000, max_count=60, exclude_evaluation_sets=False)
    assert len(both) == 60 + 30 + 50 + 50 and not report["excluded_evaluation_sets"]


@requires_data()
def test_cli_cot_data_and_grpo_sample(tmp_path, trained_qwen3_dir):
    import subprocess
    import sys

    from spacy_recot.conll import convert

    convert(DATA / "crossner" / "politics" / "dev.txt", tmp_path / "politics.spacy", limit=4)
    convert(DATA / "crossner" / "ai" / "dev.txt", tmp_path / "ai" / "train.spacy", limit=4)
    teacher = json.dumps(
        {"@misc": "spacy_recot.HFCausal.v2", "name_or_path": str(trained_qwen3_dir), "max_new_tokens": 24}
    )
    run = [
        sys.executable,
        "-m",
        "spacy_recot",
        "cot-data",
        str(tmp_path / "politics.spacy"),
        str(tmp_path / "cot"),
        "--teacher",
        teacher,
        "--judge",
        teacher,
        "--threshold",
        "0",
    ]
    done = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads((tmp_path / "cot" / "counts.json").read_text())
    assert counts["annotate"]["annotated"] == 4
    assert sum(v for k, v in counts["validate"].items() if k.startswith(("kept", "dropped"))) == 4
    assert (tmp_path / "cot" / "ner_cot.jsonl").exists()
    done = subprocess.run(run, capture_output=True, text=True, timeout=300)  # resumes: nothing to do again
    assert json.loads((tmp_path / "cot" / "counts.json").read_text())["annotate"]["already_done"] == 4
    out = tmp_path / "sample.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy_recot",
            "grpo-sample",
            str(DATA / "pile-ner-sample" / "sample_data.json"),
            str(tmp_path / "ai" / "train.spacy"),
            str(out),
            "--num-samples",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Left out (evaluation sets" in done.stdout and "ai" in done.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and {r["source"] for r in rows} == {"sample_data"}
    assert all(set(r) == {"guid", "sentence", "schema", "entities", "source"} for r in rows)


def test_resume_refuses_a_bad_middle_line_and_drops_a_cut_multibyte_tail(tmp_path):
    path = tmp_path / "stage.jsonl"
    good = json.dumps({"guid": "a", "sentence": "Zürich"}, ensure_ascii=False)
    path.write_bytes((good + "\n").encode() + '{"guid": "b", "sentence": "Z'.encode() + "ü".encode()[:1])
    with cd.JsonlWriter(path) as out:
        assert set(out.done) == {"a"}
    assert path.read_text(encoding="utf-8") == good + "\n"
    path.write_text(good + "\n\nnot json\n" + good + "\n", encoding="utf-8")
    with pytest.raises(cd.CoTDataError, match="stage.jsonl:3"):
        cd.JsonlWriter(path)
    assert path.read_text(encoding="utf-8").count(good) == 2  # nothing deleted


def test_parse_score_reads_the_verdict():
    assert cc.parse_score("<think>There are 3 entities") is None
    assert cc.parse_score("On a scale from 0 to 10 I give 9") == 9
    assert cc.parse_score("7/10, since ... 3 entities") == 7


@requires_data()
def test_guids_of_a_sets_splits_differ(tmp_path):
    from spacy_recot.conll import convert

    for split in ("train", "dev"):
        convert(DATA / "crossner" / "ai" / f"{split}.txt", tmp_path / "ai" / f"{split}.spacy", limit=2)
    guids = [r["guid"] for split in ("train", "dev") for r in cd.read_labelled(tmp_path / "ai" / f"{split}.spacy")]
    assert len(set(guids)) == 4
