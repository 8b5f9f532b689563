"""Session fixtures: a T5 tokenizer trained here, tiny T5 models built from a config."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

# Timings and results on this 2-core machine are only stable with one thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
GNER = DATA / "gner"
GNER_SETS = [
    "crossner_ai",
    "crossner_literature",
    "crossner_music",
    "crossner_politics",
    "crossner_science",
    "mit-movie",
]

# Sentences the tiny trained model learns to tag (and their gold tags).
TRAIN_SENTENCES = [
    (["Barack", "Obama", "visited", "Paris", "."], ["B-person", "I-person", "O", "B-location", "O"]),
    (
        ["Angela", "Merkel", "met", "Macron", "in", "Berlin", "."],
        ["B-person", "I-person", "O", "B-person", "O", "B-location", "O"],
    ),
]
LABELS = ["person", "location"]


def requires_data(path: Path = DATA):
    return pytest.mark.skipif(not path.exists(), reason=f"shared data not found at {path}")


def _corpus_lines() -> List[str]:
    from spacy_recot.tasks import GNER_INSTRUCTION, RECOT_INSTRUCTION

    lines = GNER_INSTRUCTION.splitlines() + RECOT_INSTRUCTION.splitlines()
    lines.append("Use the specific entity tags: person, location and O.")
    for words, tags in TRAIN_SENTENCES:
        lines.append("Sentence: " + " ".join(words))
        lines.append(" ".join(f"{w}({t})" for w, t in zip(words, tags)))
    if GNER.exists():
        for name in GNER_SETS:
            words: List[str] = []
            for line in (GNER / name / "test.txt").read_text(encoding="utf-8").splitlines()[:3000]:
                if not line.strip():
                    if words:
                        lines.append(" ".join(words))
                        words = []
                    continue
                word, tag = line.split("\t")
                words.append(f"{word}({tag})")
    return lines


@pytest.fixture(scope="session")
def t5_tokenizer():
    """A T5 tokenizer (sentencepiece unigram, T5's special ids) trained on the spot."""
    from spacy_recot.testing.tiny import train_t5_tokenizer

    return train_t5_tokenizer(_corpus_lines(), vocab_size=600)


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory, t5_tokenizer) -> Path:
    """A randomly initialised tiny T5 with the session tokenizer, saved to disk."""
    from spacy_recot.testing.tiny import save_model, tiny_t5

    return save_model(tiny_t5(t5_tokenizer), t5_tokenizer, tmp_path_factory.mktemp("tiny_t5"))


@pytest.fixture(scope="session")
def trained_t5_dir(tmp_path_factory, t5_tokenizer) -> Path:
    """A tiny T5 trained here until it writes the right BIO answer for
    TRAIN_SENTENCES under the ReCoT prompt: the real generate-and-parse path."""
    import torch

    from spacy_recot.chunks import Chunk
    from spacy_recot.tasks import make_recot_prompt
    from spacy_recot.testing.tiny import save_model, tiny_t5

    prompt = make_recot_prompt()
    sources, targets = [], []
    for words, tags in TRAIN_SENTENCES:
        chunk = Chunk.from_words(words)
        sources.append(prompt.render(chunk, LABELS))
        targets.append(" ".join(f"{w}({t})" for w, t in zip(words, tags)))
    model = tiny_t5(t5_tokenizer, seed=1)
    enc = t5_tokenizer(sources, return_tensors="pt", padding=True)
    labels = t5_tokenizer(targets, return_tensors="pt", padding=True)["input_ids"]
    labels[labels == t5_tokenizer.pad_token_id] = -100
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(400):
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        if step % 50 == 49:
            model.eval()
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=64, do_sample=False)
            model.train()
            decoded = t5_tokenizer.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            if all(d.startswith(t) for d, t in zip(decoded, targets)):
                break
    model.eval()
    return save_model(model, t5_tokenizer, tmp_path_factory.mktemp("trained_t5"))


# What the tiny causal model learns to answer under the ReasoningNER prompt:
# the T5 sentences, and one whose location string also occurs inside a person.
CAUSAL_SENTENCES = TRAIN_SENTENCES + [
    (["Paris", "Hilton", "visited", "Paris", "."], ["B-person", "I-person", "O", "B-location", "O"]),
]
RATIONALES = [
    "Barack Obama is a person. Paris is a city, so a location.",
    "Angela Merkel and Macron are persons. Berlin is a location.",
    "Paris Hilton is a person. The second Paris is a location.",
]


def _word_spans(tags: List[str]):
    from spacy_recot.tasks.bio_tags import tags_to_spans

    return list(tags_to_spans(tags))


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A byte-level BPE tokenizer (Qwen's kind) with a ChatML template, trained here."""
    from spacy_recot.chunks import Chunk
    from spacy_recot.tasks import make_reasoning_ner_prompt
    from spacy_recot.testing.tiny import train_bpe_tokenizer

    prompt = make_reasoning_ner_prompt()
    lines = _corpus_lines() + RATIONALES
    for words, tags in CAUSAL_SENTENCES:
        chunk = Chunk.from_words(words)
        lines += prompt.render(chunk, LABELS).splitlines()
        lines += prompt.render_target(chunk, _word_spans(tags), "x").splitlines()
    return train_bpe_tokenizer(lines, vocab_size=1000)


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory, bpe_tokenizer) -> Path:
    """A randomly initialised tiny Qwen3 with the session tokenizer, saved to disk."""
    from spacy_recot.testing.tiny import save_model, tiny_qwen3

    return save_model(tiny_qwen3(bpe_tokenizer), bpe_tokenizer, tmp_path_factory.mktemp("tiny_qwen3"))


@pytest.fixture(scope="session")
def trained_qwen3_dir(tmp_path_factory, bpe_tokenizer) -> Path:
    """A tiny Qwen3 trained here until, under the verbatim ReasoningNER prompt and
    the chat template, it writes a rationale in <think> and the entities as JSON."""
    import torch

    from spacy_recot.chunks import Chunk
    from spacy_recot.tasks import make_reasoning_ner_prompt
    from spacy_recot.testing.tiny import save_model, tiny_qwen3

    prompt = make_reasoning_ner_prompt()
    tok = bpe_tokenizer
    rows, targets = [], []
    for (words, tags), rationale in zip(CAUSAL_SENTENCES, RATIONALES):
        chunk = Chunk.from_words(words)
        chat = tok.apply_chat_template(
            [{"role": "user", "content": prompt.render(chunk, LABELS)}], tokenize=False, add_generation_prompt=True
        )
        target = prompt.render_target(chunk, _word_spans(tags), rationale)
        p_ids = tok(chat, add_special_tokens=False)["input_ids"]
        t_ids = tok(target + "<|im_end|>", add_special_tokens=False)["input_ids"]
        rows.append((p_ids, t_ids))
        targets.append(target)
    width = max(len(p) + len(t) for p, t in rows)
    input_ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, t) in enumerate(rows):
        ids = torch.tensor(p + t)
        input_ids[i, : len(ids)] = ids
        attention[i, : len(ids)] = 1
        labels[i, len(p) : len(ids)] = torch.tensor(t)
    model = tiny_qwen3(tok, seed=1)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(300):
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        if loss.item() < 0.01:
            break
    model.eval()
    return save_model(model, tok, tmp_path_factory.mktemp("trained_qwen3"))


def reasoning_requests(sentences, labels=LABELS):
    """Requests for word lists under ReasoningNER's verbatim prompt."""
    from spacy_recot.chunks import Chunk, Request
    from spacy_recot.tasks import make_reasoning_ner_prompt

    prompt = make_reasoning_ner_prompt()
    out = []
    for words in sentences:
        chunk = Chunk.from_words(words)
        schema = prompt.schema(labels)
        out.append(Request(prompt.render(chunk, labels), chunk, schema, constraint=prompt.constraint(chunk, schema)))
    return out


# What the oracle pipeline (below) knows: each sentence's person.
ORACLE_SENTENCES = [
    "Barack Obama visited Paris .",
    "Angela Merkel met Macron in Berlin .",
    "Tim Cook works in Cupertino .",
]


@pytest.fixture(scope="session")
def oracle_pipeline(tmp_path_factory) -> Path:
    """A pipeline folder whose model answers with the gold entities of
    ORACLE_SENTENCES (its first two words, a person): loads in a moment, runs
    the whole component, and fails (error handler) on any other text."""
    import spacy
    from spacy.tokens import DocBin, Span

    root = tmp_path_factory.mktemp("oracle_pipeline")
    nlp = spacy.blank("en")
    docs = [nlp(text) for text in ORACLE_SENTENCES]
    for doc in docs:
        doc.ents = [Span(doc, 0, 2, "person")]
    DocBin(docs=docs).to_disk(root / "gold.spacy")
    model = {"@misc": "spacy_recot.Oracle.v1", "gold": str(root / "gold.spacy"), "output_format": "entities"}
    nlp.add_pipe("recot_ner", config={"labels": ["person"], "model": model})
    nlp.to_disk(root / "pipeline")
    return root / "pipeline"


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this user cannot write in (root writes anywhere but in /sys)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        try:
            (candidate / "probe").touch()
        except OSError:
            return candidate
        (candidate / "probe").unlink()
    pytest.skip(f"no folder this user (uid {os.getuid()}) cannot write in")


def copy_project(tmp_path: Path) -> Path:
    """A copy of the spaCy project's own files: project.yml, the files of its
    script folders (not the outputs of earlier runs) and the configs."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "project.yml", project)
    for folder in ("scripts", "training", "benchmarks"):
        (project / folder).mkdir()
        for path in (ROOT / folder).iterdir():
            if path.is_file():
                shutil.copy(path, project / folder)
    shutil.copytree(ROOT / "configs", project / "configs", ignore=shutil.ignore_patterns("__pycache__"))
    return project


def run_workflow(project: Path, workflow: str, timeout: int) -> None:
    """`spacy project run WORKFLOW` in `project` on this team's data; it must succeed."""
    run = [
        sys.executable,
        "-m",
        "spacy",
        "project",
        "run",
        workflow,
        str(project),
        f"--vars.data_dir={DATA}",
        f"--vars.pile_ner={DATA / 'pile-ner-sample' / 'sample_data.json'}",
    ]
    done = subprocess.run(run, cwd=project, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
