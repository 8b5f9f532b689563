"""Session fixtures: a T5 tokenizer trained here, tiny T5 models built from a config."""
import os
from pathlib import Path
from typing import List

import pytest

# Timings and results on this 2-core machine are only stable with one thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GNER = DATA / "gner"
GNER_SETS = ["crossner_ai", "crossner_literature", "crossner_music", "crossner_politics", "crossner_science", "mit-movie"]

# Sentences the tiny trained model learns to tag (and their gold tags).
TRAIN_SENTENCES = [
    (["Barack", "Obama", "visited", "Paris", "."], ["B-person", "I-person", "O", "B-location", "O"]),
    (["Angela", "Merkel", "met", "Macron", "in", "Berlin", "."], ["B-person", "I-person", "O", "B-person", "O", "B-location", "O"]),
]
LABELS = ["person", "location"]


def requires_data(path: Path = DATA):
    return pytest.mark.skipif(not path.exists(), reason=f"shared data not found at {path}")


def _corpus_lines() -> List[str]:
    from spacy_recot.prompts import GNER_INSTRUCTION, RECOT_INSTRUCTION

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
    from spacy_recot.tiny import train_t5_tokenizer

    return train_t5_tokenizer(_corpus_lines(), vocab_size=600)


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory, t5_tokenizer) -> Path:
    """A randomly initialised tiny T5 with the session tokenizer, saved to disk."""
    from spacy_recot.tiny import tiny_t5

    path = tmp_path_factory.mktemp("tiny_t5")
    tiny_t5(t5_tokenizer).save_pretrained(path)
    t5_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def trained_t5_dir(tmp_path_factory, t5_tokenizer) -> Path:
    """A tiny T5 trained here until it writes the right BIO answer for
    TRAIN_SENTENCES under the ReCoT prompt: the real generate-and-parse path."""
    import torch

    from spacy_recot.chunks import Chunk
    from spacy_recot.prompts import make_recot_prompt
    from spacy_recot.tiny import tiny_t5

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
    path = tmp_path_factory.mktemp("trained_t5")
    model.save_pretrained(path)
    t5_tokenizer.save_pretrained(path)
    return path
