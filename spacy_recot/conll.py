"""Reading CoNLL-style BIO files (CrossNER, the GNER layout, MIT) into spaCy docs.

One token a line, columns split by a tab (or by spaces when a line has no
tab), a blank line between sentences. The word is the first column and the
tag the last (CrossNER, GNER, CoNLL-2003), or the tag first and the word
second (MIT's original `.bio` files); the layout is detected per file. Any
line that fits neither fails with the file name and line number.
"""

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from .tasks.bio_tags import COLUMN_TAG_RE, repair_orphans

SKIP_LINES = ("-DOCSTART-",)


class ConllFormatError(ValueError):
    """A line of a CoNLL file is not `word<TAB>tag` (or `tag<TAB>word`)."""


@dataclass
class Sentence:
    words: List[str]
    tags: List[str]
    line: int  # line number of the first word, for error messages


def _columns(line: str) -> List[str]:
    return line.split("\t") if "\t" in line else line.split()


def _detect_layout(path: Path, lines: Sequence[str]) -> str:
    """'word_first' or 'tag_first', from the first lines that have content."""
    votes: Counter = Counter()
    for line in lines[:200]:
        cols = _columns(line.rstrip("\r\n"))
        if len(cols) < 2 or cols[0] in SKIP_LINES:
            continue
        last_is_tag = bool(COLUMN_TAG_RE.match(cols[-1].strip()))
        first_is_tag = bool(COLUMN_TAG_RE.match(cols[0].strip()))
        if last_is_tag and not first_is_tag:
            votes["word_first"] += 1
        elif first_is_tag and not last_is_tag:
            votes["tag_first"] += 1
    if not votes:
        return "word_first"
    return votes.most_common(1)[0][0]


def read_conll(path: Path) -> Iterator[Sentence]:
    """Yield the sentences of a CoNLL BIO file, checking every line."""
    path = Path(path)
    try:
        # utf-8-sig: a byte order mark (as some editors write) is not part of the first word.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConllFormatError(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise ConllFormatError(f"{path}: not UTF-8 text ({err})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    layout = _detect_layout(path, lines)
    words: List[str] = []
    tags: List[str] = []
    first_line = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            if words:
                yield Sentence(words, tags, first_line)
                words, tags = [], []
            continue
        cols = _columns(line)
        if cols[0] in SKIP_LINES:
            continue
        if len(cols) < 2:
            raise ConllFormatError(
                f"{path}:{number}: expected 'word<TAB>tag' with a BIO tag (O, B-type, I-type), "
                f"got {line!r} (one column)"
            )
        word, tag = (cols[0], cols[-1]) if layout == "word_first" else (cols[1], cols[0])
        word, tag = word.strip(), tag.strip()
        if not COLUMN_TAG_RE.match(tag):
            expected = "word<TAB>tag" if layout == "word_first" else "tag<TAB>word"
            raise ConllFormatError(
                f"{path}:{number}: expected '{expected}' with a BIO tag (O, B-type, I-type), "
                f"got tag {tag!r} in {line!r}"
            )
        if not word or any(ch.isspace() for ch in word):
            raise ConllFormatError(f"{path}:{number}: the word {word!r} is empty or holds whitespace")
        if not words:
            first_line = number
        words.append(word)
        tags.append(tag)
    if words:
        yield Sentence(words, tags, first_line)


def read_label_file(path: Path) -> List[str]:
    """A GNER `label.txt`: one label a line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConllFormatError(f"{path}: no such label file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConllFormatError(f"{path}: not a readable label file ({err})") from None
    labels = [line.strip() for line in text.splitlines()]
    labels = [label for label in labels if label]
    if "O" in labels:
        raise ConllFormatError(f"{path}: 'O' is not a label; list only entity types")
    return labels


def load_label_map(path: Optional[Path]) -> Dict[str, str]:
    """A JSON object mapping original labels to new ones ("" or "O" drops a label)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConllFormatError(f"{path}: not a readable JSON label map ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConllFormatError(f"{path}: a label map must be a JSON object of strings to strings")
    return data


def clean_tags(tags: Sequence[str], label_map: Dict[str, str], counts: Counter) -> List[str]:
    """Rename labels and repair orphan `I-` tags (they open an entity instead)."""
    out: List[str] = []
    for tag in tags:
        label = label_map.get(tag[2:], tag[2:]) if tag != "O" else "O"
        if label in ("", "O"):
            counts["dropped_by_label_map"] += tag.startswith("B-")
            out.append("O")
        else:
            out.append(f"{tag[0]}-{label}")
    return repair_orphans(out, counts, "orphan_inside_repaired")


def sentences_to_docs(
    vocab: Vocab,
    sentences: Sequence[Sentence],
    label_map: Optional[Dict[str, str]] = None,
    counts: Optional[Counter] = None,
) -> List[Doc]:
    """One doc a sentence: words joined by single spaces, entities from the tags."""
    counts = counts if counts is not None else Counter()
    docs = []
    for sent in sentences:
        tags = clean_tags(sent.tags, label_map or {}, counts)
        spaces = [True] * (len(sent.words) - 1) + [False]
        docs.append(Doc(vocab, words=sent.words, spaces=spaces, ents=tags))
    return docs


def find_label_file(path: Path) -> Optional[Path]:
    """The GNER layout keeps `label.txt` beside the data file."""
    candidate = Path(path).parent / "label.txt"
    return candidate if candidate.exists() else None


def convert(
    input_path: Path,
    output_path: Path,
    label_map_path: Optional[Path] = None,
    labels_path: Optional[Path] = None,
    limit: int = 0,
) -> Tuple[int, List[str], Counter]:
    """Convert a CoNLL file to a DocBin, and write its label list beside it.

    The label list (`<output>.labels.json`) comes from `label.txt` (given, or
    found beside the input as in the GNER layout), else from the tags seen in
    the whole file. `limit` keeps only the first N sentences (a dev slice).
    Returns the number of docs, the labels and the repair counts.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be 0 (every sentence) or a number of sentences, not {limit!r}")
    output_path = Path(output_path)
    if output_path.is_dir():
        raise ValueError(f"{output_path} is a folder: give the .spacy file to write")
    counts: Counter = Counter()
    label_map = load_label_map(label_map_path)
    sentences = list(read_conll(input_path))
    docs = sentences_to_docs(Vocab(), sentences, label_map, counts)
    labels_path = labels_path or find_label_file(input_path)
    seen = sorted({ent.label_ for doc in docs for ent in doc.ents})
    if labels_path is not None:
        labels = [label_map.get(label, label) for label in read_label_file(labels_path)]
        labels = [label for label in labels if label not in ("", "O")]
        unknown = [label for label in seen if label not in labels]
        if unknown:
            raise ConllFormatError(
                f"{input_path}: labels {unknown} are not in {labels_path}; add them there or map them with a label map"
            )
    else:
        labels = seen
    if limit:
        docs = docs[:limit]
    output_path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs).to_disk(output_path)
    labels_file(output_path).write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")
    return len(docs), labels, counts


def labels_file(spacy_path: Path) -> Path:
    """Where `convert` writes the label list of a converted `.spacy` file."""
    spacy_path = Path(spacy_path)
    return spacy_path.with_name(spacy_path.stem + ".labels.json")


def read_docbin(path: Path, vocab: Vocab, limit: int = 0) -> List[Doc]:
    """The docs of a `.spacy` file (the first `limit` of them when limit > 0)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No data file at {path}")
    docs = []
    for doc in DocBin().from_disk(path).get_docs(vocab):
        if limit and len(docs) >= limit:
            break
        docs.append(doc)
    return docs


def load_label_list(path: Path) -> List[str]:
    """A JSON list of label names (a `.labels.json`); a clear error naming the file."""
    try:
        labels = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON list of labels ({err})") from None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ValueError(f"{path}: expected a JSON list of label names")
    return labels


def read_labels(spacy_path: Path, docs: Optional[Sequence[Doc]] = None) -> List[str]:
    """The label list of a converted set: its `.labels.json` (written by
    `convert`), else the labels of the docs' entities, sorted."""
    path = labels_file(spacy_path)
    if path.exists():
        return load_label_list(path)
    if docs is None:
        docs = read_docbin(spacy_path, Vocab())
    return sorted({ent.label_ for doc in docs for ent in doc.ents})
