"""The one JSON lines reader: records with line numbers, every bad line named by file and line."""

import json

import pytest

from spacy_recot.jsonl import JsonlAppender, JsonlError, load_jsonl, read_jsonl, read_lines, write_jsonl


def test_records_come_with_their_line_numbers(tmp_path):
    path = tmp_path / "in.jsonl"
    # A byte order mark, a blank line, Windows line ends, and a line separator (U+2028)
    # inside a string, which json.dumps writes as it is: only "\n" ends a line.
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n  \n{"a": "x\xe2\x80\xa8y"}')
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (4, {"a": "x\u2028y"})]
    assert list(read_lines(path)) == [(1, '{"a": 1}\r'), (2, ""), (3, "  "), (4, '{"a": "x\u2028y"}')]
    assert write_jsonl(tmp_path / "new" / "out.jsonl", [{"a": "x\u2028y"}, {"b": "é"}]) == 2
    assert load_jsonl(tmp_path / "new" / "out.jsonl") == [{"a": "x\u2028y"}, {"b": "é"}]


@pytest.mark.parametrize(
    "content,message",
    [
        (b'{"a": 1}\n{"a": "caf\xe9"}\n', "in.jsonl:2: not UTF-8 text"),
        (b'{"a": 1}\n\n{"a": \n', "in.jsonl:3: not a JSON object (Expecting value"),
        (b'{"a": 1}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n", "in.jsonl:2: not a JSON object (nested too deeply)"),
        (b'{"a": 1}\n[1, 2]\n', "in.jsonl:2: not a JSON object (a JSON list)"),
    ],
)
def test_a_bad_line_is_named(tmp_path, content, message):
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    with pytest.raises(JsonlError) as err:
        list(read_jsonl(path))
    assert str(err.value).startswith(f"{path.parent}/{message}")


def test_a_json_file_is_read_when_asked(tmp_path):
    path = tmp_path / "in.json"
    path.write_text('\n[\n  {"a": 1},\n\n  {"a": 2,\n   "b": 3}, {"a": 4}\n]\n')
    assert list(read_jsonl(path, json_file=True)) == [(3, {"a": 1}), (5, {"a": 2, "b": 3}), (6, {"a": 4})]
    with pytest.raises(JsonlError, match="in.json:2: not a JSON object"):
        list(read_jsonl(path))
    path.write_text('{\n  "a": 1\n}\n')
    assert list(read_jsonl(path, json_file=True)) == [(1, {"a": 1})]
    path.write_text("[]")
    assert list(read_jsonl(path, json_file=True)) == []
    path.write_text('[{"a": 1}, 2]')
    with pytest.raises(ValueError, match="in.json:1: not a JSON object \\(a JSON int\\)"):
        list(read_jsonl(path, json_file=True, error=ValueError))
    # JSON lines whose first line is a list are JSON lines; a line of neither names the line.
    path.write_text('[{"a": 1}]\n{"a": 2}\n{oops\n')
    with pytest.raises(JsonlError, match="in.json:1: not a JSON object \\(a JSON list\\)"):
        list(read_jsonl(path, json_file=True))
    path.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(JsonlError, match="in.json:2: not JSON \\(nor is the whole file\\)"):
        list(read_jsonl(path, json_file=True))


def test_appending_resumes_after_a_crash(tmp_path):
    path = tmp_path / "stage.jsonl"
    with JsonlAppender(path, key="guid") as out:
        out.write({"guid": "a", "text": "Zürich"})
        assert set(out.done) == {"a"}
    good = path.read_bytes()
    path.write_bytes(good + b'{"guid": "b", "text": "Z\xc3')  # cut off in a character
    with JsonlAppender(path, key="guid") as out:
        assert out.done == {"a": {"guid": "a", "text": "Zürich"}}
        out.write({"guid": "b"})
    assert load_jsonl(path) == [{"guid": "a", "text": "Zürich"}, {"guid": "b"}]
    for bad, why in (
        (b"not json\n", "not a JSON object"),
        (json.dumps({"id": 1}).encode() + b"\n", "a record without a 'guid'"),
    ):
        path.write_bytes(good + bad + b'{"guid": "c"')
        with pytest.raises(JsonlError, match=f"stage.jsonl:2: {why}.*fix or remove the line to resume"):
            JsonlAppender(path, key="guid")
        assert path.read_bytes() == good + bad + b'{"guid": "c"'  # nothing removed
