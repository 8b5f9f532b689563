"""Greedy decoding under a grammar, as `generate` does it, but faster on a CPU.

A finished answer leaves the batch: its rows are dropped from the key-value
cache, so a batch costs what its answers cost, not len(batch) times its
longest one. With `draft_tokens`, each step also feeds a guess of the tokens
that follow (prompt lookup: what followed the last few tokens where they
occurred before, in the prompt or the answer: entities are copied from the
text, keys and layout from the prompt's example), checks every guess against
the greedy choice at its position in the same forward pass and keeps the
agreeing ones. The answers are the greedy ones (tested against `generate`); a
step costs more compute, so the guesses are spread over the active rows: long
when few answers are left (a lone row reads all the weights for one token),
short or none in a full batch.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

from ..answers import Answer
from .candidates import lookup_draft
from .decoded import scored_answer
from .logits_process import overflow_error
from .output_head import allowed_argmax, output_head
from .prefill import full_attention, prefill
from .settings import DecodingSettings
from .stopping_criteria import AnswerCap


@dataclass
class _Answers:
    """What one call is writing: each answer's tokens, their log-probabilities,
    what its guesses are looked up in (its prompt, then its answer) and its
    grammar matcher (none without a grammar)."""

    tokens: List[List[int]]
    logprobs: List[List[float]]
    contexts: List[List[int]]
    matchers: List[Any] = field(default_factory=list)


class GreedyDecoder:
    """Greedy decoding of a batch of prompts with one causal model.

    grammar: An `EntityGrammar` (answers constrained), or None.
    stop_ids (Set[int]): The tokens that end an answer.
    max_new_tokens (int): The longest answer.
    draft_tokens (int): Guessed tokens checked per step, shared among the
        answers still being written (0: none).
    name (str): The model, as errors name it.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        grammar: Any = None,
        stop_ids: Set[int],
        max_new_tokens: int,
        draft_tokens: int = 0,
        settings: Optional[DecodingSettings] = None,
        stats: Optional[Counter] = None,
        name: str = "",
    ):
        self.model, self.tokenizer, self.grammar = model, tokenizer, grammar
        self.stop, self.limit, self.draft_tokens = set(stop_ids), max_new_tokens, draft_tokens
        self.settings = settings or DecodingSettings()
        self.stats = stats if stats is not None else Counter()
        self.name = name
        self.generated = 0
        # Under a grammar, the output layer is applied to the tokens it allows only.
        self.head = output_head(model) if grammar is not None else None

    def __call__(self, requests: Sequence[Any], enc: Dict[str, Any], cap: AnswerCap) -> List[Answer]:
        """Scored answers for `requests`, whose prompts `enc` holds (left-padded,
        maybe after a shared prefix's cache in `past_key_values`)."""
        import torch

        ids, mask, cache = enc["input_ids"], enc["attention_mask"], enc.get("past_key_values")
        # Positions from the mask, as generate computes them (padding may sit
        # between a shared prefix and the rest).
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        done_before = cache.get_seq_length() if cache is not None else 0
        answers = _Answers(
            tokens=[[] for _ in requests],
            logprobs=[[] for _ in requests],
            contexts=[[t for t, m in zip(row, keep) if m] for row, keep in zip(ids.tolist(), mask.tolist())],
            matchers=self.grammar.matchers(requests) if self.grammar is not None else [],
        )
        active = list(range(len(requests)))
        with torch.inference_mode():
            cache, last = prefill(
                self.model, self._forward, ids, mask, positions, cache, done_before, self.settings, self.stats
            )
            # Masked-out guesses are harmless only in a full-attention cache (a
            # sliding window or a recurrent state would keep them).
            can_guess = full_attention(cache)
            next_position = positions[:, -1] + 1
            keep, pending = self._first_tokens(answers, active, last, cap)
            while keep:
                if len(keep) < len(active):
                    index = torch.tensor(keep, device=self.model.device)
                    cache.batch_select_indices(index)
                    mask, next_position = mask[index], next_position[index]
                    active = [active[b] for b in keep]
                cache, mask, next_position, keep, pending = self._step(
                    answers, active, pending, cache, mask, next_position, can_guess, cap
                )
        # (The tokens of this call, for the backend's counts.)
        self.generated = sum(len(t) for t in answers.tokens)
        return [scored_answer(self.tokenizer, t, lp, self.stop) for t, lp in zip(answers.tokens, answers.logprobs)]

    # -- one pass of the model ---------------------------------------------

    def _forward(self, keep: Union[int, List[int]], **inputs: Any) -> Tuple[Any, Any]:
        """The cache, and the logits (or hidden states, with the sparse output
        layer) of the last `keep` positions, or of the positions listed in `keep`."""
        import torch

        if self.head is None:
            listed = torch.tensor(keep, device=self.model.device) if isinstance(keep, list) else keep
            out = self.model(**inputs, use_cache=True, logits_to_keep=listed)
            cache, result = out.past_key_values, out.logits
            result = (result if isinstance(keep, list) else result[:, -keep:]).float()
        else:
            out = self.head[0](**inputs, use_cache=True)
            hidden = out.last_hidden_state
            cache, result = out.past_key_values, hidden[:, keep] if isinstance(keep, list) else hidden[:, -keep:]
        if not torch.isfinite(result).all():
            # (An argmax over NaN would write token 0 on and on.)
            raise overflow_error(self.name, self.model.dtype)
        return cache, result

    def _choose(self, outputs: Any, bitmask: Any) -> Tuple[List[int], List[float]]:
        """The greedy (grammar-allowed) token and its log-probability at each row of `outputs`."""
        import torch

        if self.head is not None:
            chosen, scores = allowed_argmax(outputs, self.head[1], bitmask, self.settings.sparse_head_share, self.stats)
        else:
            logits = outputs
            if bitmask is not None:
                self.grammar.apply_bitmask(logits, bitmask)
            scores = torch.log_softmax(logits, dim=-1)
            chosen = logits.argmax(-1)
            scores = scores.gather(1, chosen[:, None]).squeeze(1)
        return chosen.tolist(), scores.tolist()

    # -- bookkeeping of the answers ------------------------------------------

    def _take(self, answers: _Answers, r: int, t: int, score: float, cap: AnswerCap) -> bool:
        """Append token `t` to answer `r`; whether the answer is finished."""
        answers.tokens[r].append(t)
        answers.logprobs[r].append(score)
        answers.contexts[r].append(t)
        return t in self.stop or len(answers.tokens[r]) >= self.limit or cap.reached(r, answers.tokens[r])

    def _accept(self, answers: _Answers, r: int, t: int) -> bool:
        """Advance answer `r`'s grammar by token `t`; whether the grammar is done."""
        if not answers.matchers:
            return False
        answers.matchers[r].accept_token(t)
        return answers.matchers[r].is_terminated()

    def _first_tokens(
        self, answers: _Answers, active: List[int], last: Any, cap: AnswerCap
    ) -> Tuple[List[int], List[int]]:
        """The first token of each answer, chosen from the prompt pass: the rows
        still going, and the token each will feed next."""
        bitmask = None
        if answers.matchers:
            bitmask = self.grammar.allocate_bitmask(len(active))
            for b, r in enumerate(active):
                answers.matchers[r].fill_next_token_bitmask(bitmask, b)
        chosen, scores = self._choose(last[:, -1], bitmask)
        keep, pending = [], []
        for b, r in enumerate(active):
            finished = self._take(answers, r, chosen[b], scores[b], cap) or self._accept(answers, r, chosen[b])
            if not finished:
                keep.append(b)
                pending.append(chosen[b])
        return keep, pending

    def _drafts(self, answers: _Answers, active: List[int], can_guess: bool) -> Tuple[List[List[int]], Any, int]:
        """Each active answer's guesses, cut where the grammar rejects one (the
        matcher is rolled back after the check), with the grammar's mask at
        every fed position (None without a grammar) and the mask's row stride."""
        n_draft = min(self.settings.max_draft, self.draft_tokens // len(active)) if can_guess else 0
        drafts = [lookup_draft(answers.contexts[r], n_draft) if n_draft else [] for r in active]
        # A guess ends before an end token: the grammar is never ended by a guess.
        drafts = [d[: next((i for i, t in enumerate(d) if t in self.stop), len(d))] for d in drafts]
        stride = 1 + max(len(d) for d in drafts)
        if not answers.matchers:
            return drafts, None, stride
        bitmask = self.grammar.allocate_bitmask(len(active) * stride)
        for b, r in enumerate(active):
            matcher, accepted = answers.matchers[r], 0
            for j in range(len(drafts[b]) + 1):
                matcher.fill_next_token_bitmask(bitmask, b * stride + j)
                if j == len(drafts[b]) or not matcher.accept_token(drafts[b][j]):
                    break
                accepted += 1
                if matcher.is_terminated():  # (an end token of the grammar's own)
                    break
            drafts[b] = drafts[b][:accepted]
        return drafts, bitmask, stride

    def _step(
        self,
        answers: _Answers,
        active: List[int],
        pending: List[int],
        cache: Any,
        mask: Any,
        next_position: Any,
        can_guess: bool,
        cap: AnswerCap,
    ) -> Tuple[Any, Any, Any, List[int], List[int]]:
        """One forward pass over the pending tokens and their guesses; the rows
        still going and what each feeds next."""
        import torch

        device = self.model.device
        drafts, bitmask, stride = self._drafts(answers, active, can_guess)
        width = 1 + max(len(d) for d in drafts)
        feed = [[p] + d + [p] * (width - 1 - len(d)) for p, d in zip(pending, drafts)]
        fed = torch.tensor([[1] * (1 + len(d)) + [0] * (width - 1 - len(d)) for d in drafts], device=device)
        mask = torch.cat([mask, fed.to(mask.dtype)], dim=1)
        step = torch.arange(width, device=device)
        cache, outputs = self._forward(
            width,
            input_ids=torch.tensor(feed, device=device),
            attention_mask=mask,
            position_ids=next_position[:, None] + step,
            past_key_values=cache,
        )
        rows = [b * width + j for b, d in enumerate(drafts) for j in range(len(d) + 1)]
        flat = outputs.reshape(-1, outputs.shape[-1])[torch.tensor(rows, device=device)]
        if bitmask is not None:
            bitmask = bitmask[torch.tensor([b * stride + j for b, d in enumerate(drafts) for j in range(len(d) + 1)])]
        chosen, scores = self._choose(flat, bitmask)
        keep, pending, used = [], [], []
        at = 0
        for b, (r, d) in enumerate(zip(active, drafts)):
            # Guess j is right when the greedy choice after the tokens before it is guess j.
            agree = 0
            while agree < len(d) and chosen[at + agree] == d[agree]:
                agree += 1
            if answers.matchers and len(d) > agree:
                answers.matchers[r].rollback(len(d) - agree)
            finished = False
            for j in range(agree):
                finished = self._take(answers, r, d[j], scores[at + j], cap)
                if finished:
                    break
            if not finished:
                # The greedy choice after the last kept guess: the next token.
                t = chosen[at + agree]
                finished = self._take(answers, r, t, scores[at + agree], cap) or self._accept(answers, r, t)
            self.stats["draft_tokens"] += len(d)
            self.stats["draft_tokens_kept"] += agree
            used.append(1 + agree)
            at += len(d) + 1
            if not finished:
                keep.append(b)
                pending.append(t)
        # The guesses not kept stay in the cache, masked out; columns no row uses are cut.
        fed = torch.tensor([[1] * u + [0] * (width - u) for u in used], device=device)
        mask[:, -width:] = fed.to(mask.dtype)
        unused = width - max((used[b] for b in keep), default=width)
        if unused and keep:
            cache.crop(-unused)
            mask = mask[:, :-unused]
        next_position = next_position + torch.tensor(used, device=device)
        return cache, mask, next_position, keep, pending
