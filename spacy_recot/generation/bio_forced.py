"""Forced-word BIO decoding for seq2seq models: only the tags are decisions.

A BIO answer copies the input words: `word(tag) word(tag) ...`. So every
word's tokens are forced, and at each word the model only chooses among the
token sequences of `word(O)`, `word(B-x)` and, after a tag of type x,
`word(I-x)`, for the offered labels x. The answer is valid BIO by
construction and its words are the input's, so reading it needs no repairs.

Two decoders of the same constraint:
- `constrained_generate`: token by token, through `model.generate` with a
  `prefix_allowed_tokens_fn` (the reference, and a setting);
- `forced_decode`: in parallel. Start from all `O`, run one teacher-forced
  decoder pass over the batch with the encoder output computed once, re-decide
  every word from that pass's logits (Jacobi iteration), and repeat for the
  rows that changed. Each pass confirms at least one more decision of the
  greedy answer, and a row that does not change is at the fixed point, which
  is exactly constrained greedy decoding; typically it takes a few passes
  instead of one step per token.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

Ids = Tuple[int, ...]


def tag_candidates(labels: Sequence[str], previous: str) -> List[str]:
    """The tags a word may take after `previous`: O, B-x, and I-x only after a
    tag of type x. In this fixed order (ties between candidates go to the first)."""
    tags = ["O"] + [f"B-{label}" for label in labels]
    if previous != "O":
        tags.append("I-" + previous[2:])
    return tags


@dataclass
class WordChoices:
    """The token sequences that write one sentence's answer, word by word.

    words (List[str]): The words, as the prompt shows them.
    labels (List[str]): The labels offered.
    pieces (List[Dict[str, Ids]]): Per word, the token ids of `word(tag)` (with
        the space before it for all but the first) for every tag.
    eos (int): The end-of-sequence id that closes the answer.
    """

    words: List[str]
    labels: List[str]
    pieces: List[Dict[str, Ids]]
    eos: int

    @classmethod
    def build(cls, tokenizer: Any, words: Sequence[str], labels: Sequence[str]) -> "WordChoices":
        tags = ["O"] + [f"{p}-{label}" for label in labels for p in "BI"]
        texts = [("" if i == 0 else " ") + f"{word}({tag})" for i, word in enumerate(words) for tag in tags]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        pieces = [{tag: tuple(ids[i * len(tags) + j]) for j, tag in enumerate(tags)} for i in range(len(words))]
        return cls(list(words), list(labels), pieces, int(tokenizer.eos_token_id))

    def sequence(self, tags: Sequence[str]) -> List[int]:
        """The answer's token ids for these tags, end of sequence included."""
        out: List[int] = []
        for piece, tag in zip(self.pieces, tags):
            out.extend(piece[tag])
        out.append(self.eos)
        return out

    def allowed(self, ids: Sequence[int]) -> List[int]:
        """The tokens that may follow `ids` (the answer so far, without the
        decoder's start token); [] when the answer is complete."""
        pos, previous = 0, "O"
        for piece in self.pieces:
            candidates = [(tag, piece[tag]) for tag in tag_candidates(self.labels, previous)]
            rest = tuple(ids[pos:])
            done = [(tag, seq) for tag, seq in candidates if rest[: len(seq)] == seq]
            if done:
                tag, seq = min(done, key=lambda c: len(c[1]))
                pos, previous = pos + len(seq), tag
                continue
            return sorted({seq[len(rest)] for _, seq in candidates if seq[: len(rest)] == rest})
        return [self.eos] if pos == len(ids) else []

    def tokens(self) -> List[int]:
        """Every token a tag choice can be made between (the only logits read)."""
        return sorted({t for piece in self.pieces for seq in piece.values() for t in seq})

    def update(self, tags: Sequence[str], logits: Any, columns: Optional[Dict[int, int]] = None) -> List[str]:
        """One Jacobi step: every word re-decided from the logits of a
        teacher-forced pass over `sequence(tags)` (`logits[t, columns[id]]`
        scores token `id` at position t; without `columns`, the column is the
        id). Decisions whose prefix is unchanged are exact greedy decisions;
        the rest are guesses the next pass checks."""
        new: List[str] = []
        pos, previous = 0, "O"  # the word's start in the old sequence
        length = logits.shape[0]
        for piece, old in zip(self.pieces, tags):
            candidates = [(tag, piece[tag]) for tag in tag_candidates(self.labels, previous)]
            old_seq = piece[old]
            prefix: Ids = ()
            chosen = None
            while chosen is None:
                alive = [(tag, seq) for tag, seq in candidates if seq[: len(prefix)] == prefix]
                complete = [(tag, seq) for tag, seq in alive if len(seq) == len(prefix)]
                if complete:
                    chosen = complete[0][0]
                    break
                options = sorted({seq[len(prefix)] for _, seq in alive})
                at = pos + len(prefix)
                if len(options) == 1:
                    token = options[0]
                elif prefix == old_seq[: len(prefix)] and at < length:
                    # The old answer's logits at this position see the right context.
                    scores = logits[at, [columns[o] for o in options] if columns else options]
                    token = options[int(scores.argmax())]  # ties: the lowest id, as generate
                else:
                    # Past a changed token: guess the first candidate; the next pass checks it.
                    token = alive[0][1][len(prefix)]
                prefix += (token,)
            new.append(chosen)
            pos += len(old_seq)
            previous = chosen
        return new


def unchanged_positions(old: Sequence[int], new: Sequence[int]) -> int:
    """How many decoder positions (and their logits) a pass over the answer
    `new` shares with one over `old`: the inputs are the answer shifted right
    by the start token, so up to and including the first changed token's."""
    return 1 + next((j for j, (x, y) in enumerate(zip(new, old)) if x != y), min(len(old), len(new)))


def answer_text(choices: WordChoices, tags: Sequence[str], tokenizer: Any) -> str:
    """The answer as the model writes it: its tokens decoded."""
    return tokenizer.decode(choices.sequence(tags), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def forced_decode(
    model: Any,
    encoded: Dict[str, Any],
    choices: Sequence[WordChoices],
    max_passes: Optional[int] = None,
) -> Tuple[List[List[str]], Dict[str, int]]:
    """Constrained greedy BIO answers for a batch, by parallel fixed-point iteration.

    model: A Hugging Face encoder-decoder model.
    encoded: The tokenized prompts (input_ids, attention_mask) on the model's device.
    choices: Each prompt's `WordChoices`.
    max_passes: Stop a row after this many decoder passes (default: the bound
        at which its fixed point is certain, one per decision plus one).
    RETURNS: The tags per prompt, and counts: the most decoder passes a row
        took, passes over all rows, rows that reached the fixed point, answer
        positions computed.
    """
    import torch

    tags = [["O"] * len(c.words) for c in choices]
    stats = {"passes": 0, "row_passes": 0, "converged": 0, "positions": 0}
    if not choices:
        return tags, stats
    with torch.inference_mode():
        encoder_states = model.get_encoder()(**encoded).last_hidden_state
        head = TagHead(model, sorted({t for c in choices for t in c.tokens()}))
        for r, row_choices in enumerate(choices):
            # Each pass fixes at least one more token of the greedy answer: a
            # row is certain to converge within its longest answer's length + 1.
            bound = max_passes or sum(max(map(len, p.values())) for p in row_choices.pieces) + 2
            length = int(encoded["attention_mask"][r].sum())
            states = encoder_states[r : r + 1, :length]  # the row's prompt without padding
            seq = row_choices.sequence(tags[r])
            logits = head.start(states, seq)
            stats["positions"] += len(seq)
            passes = 0
            while True:
                passes += 1
                new = row_choices.update(tags[r], logits, head.columns)
                if new == tags[r]:
                    stats["converged"] += 1
                    break
                tags[r] = new
                if passes >= bound:
                    break
                new_seq = row_choices.sequence(new)
                keep = unchanged_positions(seq, new_seq)
                logits = torch.cat([logits[:keep], head.resume(new_seq, keep)])
                stats["positions"] += len(new_seq) - keep
                seq = new_seq
            stats["row_passes"] += passes
            stats["passes"] = max(stats["passes"], passes)
    return tags, stats


class TagHead:
    """Teacher-forced decoder passes over one answer at a time, scoring only the
    tokens tags are chosen between.

    For T5-family models (T5, Flan-T5, mT5, GNER-T5) the output layer is
    applied to those tokens only (over a 32k vocabulary it would cost more than
    the decoder), and a later pass reuses the key-value cache: the keys and
    values of the prompt for cross-attention, and the answer's up to the first
    position that changed, so it computes only the changed suffix. Answers go
    one at a time because each has its own suffix: on a CPU that wastes nothing
    on padding. Other models (and weights sharded by DeepSpeed ZeRO-3) run
    their full forward each pass.
    """

    def __init__(self, model: Any, token_ids: List[int]):
        import torch

        self.model = model
        self.columns = {t: i for i, t in enumerate(token_ids)}
        self.token_ids = torch.tensor(token_ids, dtype=torch.long, device=model.device)
        config = model.config
        self.t5 = all(hasattr(model, a) for a in ("decoder", "lm_head")) and hasattr(config, "scale_decoder_outputs")
        # Under DeepSpeed ZeRO-3 (training's dev scorer) the weights live in
        # shards and are gathered only inside forward: use the full forward.
        self.t5 = self.t5 and model.lm_head.weight.dim() == 2 and model.lm_head.weight.shape[0] > max(token_ids)
        if self.t5:
            self.weight = model.lm_head.weight.index_select(0, self.token_ids)
        self.cache: Any = None
        self.states: Any = None

    def _ids(self, seq: List[int], start: int = 0) -> Any:
        """Decoder inputs from position `start`: the start token, then the answer
        but its last token (which nothing follows)."""
        import torch

        ids = [self.model.config.decoder_start_token_id] + seq[:-1]
        return torch.tensor([ids[start:]], dtype=torch.long, device=self.model.device)

    def start(self, encoder_states: Any, seq: List[int]) -> Any:
        """The first pass over an answer; returns its scores, one row per position."""
        self.states = encoder_states
        if not self.t5:
            return self._full(seq)
        from transformers import DynamicCache, EncoderDecoderCache

        config = self.model.config
        self.cache = EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))
        return self._decode(seq, 0)

    def resume(self, seq: List[int], start: int) -> Any:
        """A later pass over a changed answer whose inputs before `start` are
        unchanged; returns the scores from position `start` on."""
        if not self.t5:
            return self._full(seq)[start:]
        extra = self.cache.get_seq_length() - start
        if extra > 0:
            self.cache.crop(-extra)  # a negative count removes that many positions
        return self._decode(seq, start)

    def _decode(self, seq: List[int], start: int) -> Any:
        import torch

        hidden = self.model.decoder(
            input_ids=self._ids(seq, start),
            encoder_hidden_states=self.states,
            past_key_values=self.cache,
            use_cache=True,
        ).last_hidden_state[0]
        if self.model.config.scale_decoder_outputs:
            hidden = hidden * (self.model.config.d_model**-0.5)
        return torch.nn.functional.linear(hidden, self.weight).float()

    def _full(self, seq: List[int]) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        logits = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=self.states),
            decoder_input_ids=self._ids(seq),
            use_cache=False,
        ).logits[0]
        return logits.index_select(-1, self.token_ids).float()


def constrained_generate(model: Any, encoded: Dict[str, Any], choices: Sequence[WordChoices], **generation: Any) -> Any:
    """The same constraint applied token by token with `model.generate`
    (greedy unless `generation` says otherwise); returns generate's ids."""
    import torch

    def allowed(row: int, ids: Any) -> List[int]:
        # ids starts with the decoder's start token; a finished row may only pad.
        return choices[row].allowed(ids[1:].tolist()) or [model.config.pad_token_id]

    # The longest answer any row can write: every word with its dearest tag, then the end.
    budget = max(sum(max(map(len, p.values())) for p in c.pieces) + 1 for c in choices)
    generation = {"do_sample": False, **generation, "max_new_tokens": budget}
    with torch.inference_mode():
        return model.generate(**encoded, prefix_allowed_tokens_fn=allowed, **generation)
