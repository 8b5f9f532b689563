"""The OpenAI chat-completions wire format, read as untrusted input: a message's
answer and reasoning, its tokens' log-probabilities, usage counts and
Retry-After; and the redaction of credentials from anything said about a request.
Nothing here raises on what a server sends.
"""

import codecs
import email.utils
import re
import time
from typing import Any, Dict, List, Optional, Sequence

from ..answers import Answer, TokenScore, checked_token_scores

# A quoted Authorization header's value (a header dump, a JSON echo of the
# request's headers), a bearer token anywhere, a password in a URL.
AUTHORIZATION_RE = re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,;}\]]+")
BEARER_RE = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;}\]]+")
URL_PASSWORD_RE = re.compile(r"(://[^/\s:@]*:)[^/\s@]*@")


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """`text` with each of `secrets`, every Authorization header's value, bearer
    token and URL password replaced by *** (as HTTP clients redact credentials):
    for any message about a request, before it is cut to length."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = AUTHORIZATION_RE.sub(r"\1***", text)
    text = BEARER_RE.sub(r"\1***", text)
    return URL_PASSWORD_RE.sub(r"\1***@", text)


class ServerError(RuntimeError):
    """A request to the server failed for good; the message names the URL and why."""


class Malformed(ValueError):
    """The server answered 200 with a body that is not a usable chat completion."""


def answer_from_message(message: Dict[str, Any], logprobs: Optional[Dict[str, Any]]) -> Answer:
    """The component's answer text for a chat completion's message: the reasoning
    as a `<think>` block, then the content, with token scores when the server
    sent usable log-probabilities for the content."""
    content = message.get("content")
    content = content if isinstance(content, str) else ""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    prefix = f"<think>{reasoning}</think>\n" if isinstance(reasoning, str) and reasoning else ""
    return Answer.scored(prefix + content, content_token_scores(content, logprobs, len(prefix)))


def content_token_scores(content: str, logprobs: Any, shift: int = 0) -> List[TokenScore]:
    """Where each generated token lies in `content` (shifted by `shift`) and its
    log-probability; [] when there are none, or they do not spell the content (a
    stop token after it is left out), or any is not a log-probability (NaN,
    above 0, not a number): a server's scores are untrusted, and never raise."""
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(tokens, list):
        return []
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    scores: List[TokenScore] = []
    text = ""
    try:
        for token in tokens:
            raw = token.get("bytes")
            piece = decoder.decode(bytes(raw)) if raw is not None else token.get("token", "")
            start = len(text)
            text += piece
            scores.append((start + shift, len(text) + shift, token.get("logprob", 0.0)))
        text += decoder.decode(b"", final=True)
    except (AttributeError, TypeError, ValueError, OverflowError):
        return []
    if not text.startswith(content):
        return []
    # The end-of-turn token the server lists after the content is not part of it.
    end = len(content) + shift
    kept = [(s, min(e, end), lp) for s, e, lp in scores if s < end]
    return list(checked_token_scores(end, kept) or [])


def token_count(usage: Any, key: str) -> int:
    """`usage[key]` when it is a count of tokens (a non-negative integer), else 0."""
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def retry_after(value: str) -> float:
    """The seconds a Retry-After header asks to wait (a number of seconds or an
    HTTP date); 0 when it says nothing usable."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return 0.0
    return seconds if seconds > 0 else 0.0  # (NaN too)
