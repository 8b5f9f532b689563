"""A model behind an OpenAI-compatible server (vLLM, SGLang, a llama.cpp server, a hosted API).

Each prompt goes as the user turn of a chat request to `{base_url}/chat/completions`;
up to `max_in_flight` requests of a batch are in flight at once. Transient
failures (connection errors, timeouts, 408, 429, 5xx, a body that is not the
JSON of a completion, an empty answer or one cut at max_tokens) are retried
with exponential backoff; a request that still fails becomes that request's
error, which the component hands with its doc to spaCy's error handler. The
timeout is a deadline for each try, however slowly the server sends. The API
key is read from the environment variable the config names, at request time:
it is never stored, and every message is redacted (the key, any Authorization
header) before it is raised.

With `constrained`, each request carries the JSON schema of its valid answers
(the offered labels, entity strings from the text) as `response_format`, the
same constraint the in-process grammar enforces. A reasoning model's
`reasoning_content` (vLLM's `reasoning`) comes back as a `<think>` block, and
the tokens' log-probabilities (`logprobs`) give each entity its score.
"""

import functools
import json
import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple

from ..answers import Answer
from ..chat import chat_messages
from ..chunks import Request
from ..errors import ModelLoadError
from ..generation.stopping_criteria import answer_cap
from ..tasks.base import ENTITIES
from .base import Backend
from .openai_api import Malformed, ServerError, answer_from_message, redact, retry_after, token_count

# Statuses worth another try: the server is busy, overloaded or restarting.
RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}
# The longest wait between two tries, whatever the backoff says; a server that
# asks (Retry-After) for a longer one fails the request at once.
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class ServerSettings:
    """The settings of a server backend, defined once (`make_openai_compatible`
    documents each).

    The transport (URL, key variable, concurrency, timeouts, retries) is not
    part of the identity: the same model answers the same however it is reached.
    """

    IDENTITY: ClassVar[Tuple[str, ...]] = (
        "model",
        "max_new_tokens",
        "thinking",
        "system_prompt",
        "constrained",
        "max_entity_words",
        "logprobs",
        "generation",
    )

    base_url: str
    model: str
    api_key_env: Optional[str] = None
    max_in_flight: int = 16
    timeout: float = 120.0
    max_retries: int = 4
    backoff: float = 1.0
    max_input_tokens: Optional[int] = None
    max_new_tokens: int = 1024
    tokenizer: Optional[str] = None
    thinking: Optional[bool] = None
    system_prompt: Optional[str] = None
    constrained: bool = False
    max_entity_words: int = 12
    logprobs: bool = True
    generation: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"model.base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, not {self.base_url!r}"
            )
        if "@" in self.base_url.split("/")[2]:
            # A config is saved with the pipeline: no secret may be in it.
            raise ValueError(
                f"model.base_url holds a user name or password ({redact(self.base_url)}): put the key in an "
                "environment variable and name that variable in model.api_key_env"
            )
        for key, value in (("max_in_flight", self.max_in_flight), ("max_new_tokens", self.max_new_tokens)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{key} must be a positive integer, not {value!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"model.max_retries must be a non-negative integer, not {self.max_retries!r}")
        if not self.timeout or self.timeout <= 0:
            raise ValueError(f"model.timeout must be a positive number of seconds, not {self.timeout!r}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        object.__setattr__(self, "timeout", float(self.timeout))
        object.__setattr__(self, "backoff", float(self.backoff))
        object.__setattr__(self, "generation", {"temperature": 0.0, **(self.generation or {})})


class OpenAICompatibleBackend(Backend):
    """Chat requests to an OpenAI-compatible endpoint, several in flight at once."""

    _transient = ("_client", "_word_tokens", "_local_tokenizer")
    # Token counts of words kept (a corpus repeats its words); emptied when full.
    WORD_CACHE = 200_000

    settings_class = ServerSettings

    def __init__(self, *args: Any, **kwargs: Any):
        self.settings = settings = self._settings(args, kwargs)
        # The limits the component splits docs by; max_input_tokens, when not
        # set, comes from the server's context length at load.
        self.max_input_tokens: Optional[int] = settings.max_input_tokens
        self.max_new_tokens: int = settings.max_new_tokens
        if settings.constrained:
            self.output_formats = (ENTITIES,)
        self._client: Any = None
        self._word_tokens: Optional[Dict[str, int]] = None
        # How token counts are made: "server" (its /tokenize), "local" (a tokenizer), None: not yet known.
        self._counter: Optional[str] = None
        self._local_tokenizer: Any = None

    # -- connection ----------------------------------------------------------

    @property
    def root_url(self) -> str:
        """The server's root (vLLM's /tokenize and /health live there, not under /v1)."""
        return (
            self.settings.base_url[: -len("/v1")] if self.settings.base_url.endswith("/v1") else self.settings.base_url
        )

    @property
    def is_loaded(self) -> bool:
        return self._client is not None

    def requirements(self) -> List[str]:
        reqs = ["httpx>=0.27"]
        return reqs + (["transformers>=5.0,<6"] if self.settings.tokenizer else [])

    def _headers(self) -> Dict[str, str]:
        if not self.settings.api_key_env:
            return {}
        key = os.environ.get(self.settings.api_key_env)
        if not key:
            raise ModelLoadError(
                f"model.api_key_env names the environment variable {self.settings.api_key_env!r}, which is not set"
            )
        return {"Authorization": f"Bearer {key}"}

    def _redact(self, text: str) -> str:
        """`text` without the API key or any Authorization header (see `redact`)."""
        return redact(text, [os.environ.get(self.settings.api_key_env) or ""] if self.settings.api_key_env else [])

    def _quote(self, body: bytes, n: int) -> str:
        """A body's first `n` characters for a message, redacted before the cut (a
        key cut in two would not be found)."""
        return self._redact(body.decode("utf-8", "replace"))[:n]

    def load(self) -> None:
        """Open the connection pool and check that the server serves the model."""
        import httpx

        self._headers()  # a missing key fails here, before any doc is sent
        client = httpx.Client(
            timeout=self.settings.timeout,
            limits=httpx.Limits(
                max_connections=self.settings.max_in_flight, max_keepalive_connections=self.settings.max_in_flight
            ),
        )
        url = f"{self.settings.base_url}/models"
        try:
            listing = self._send(client, "GET", url, None)
        except ServerError as err:
            client.close()
            raise ModelLoadError(f"the server did not answer (model.base_url): {err}") from err
        data = listing.get("data")
        models = [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []
        served = [m.get("id") for m in models]
        # What the server says it serves under that name (vLLM: the weights' folder as `root`):
        # two models served under one name must not share cached answers.
        entry = next((m for m in models if m.get("id") == self.settings.model), {})
        self._served = {k: entry.get(k) for k in ("id", "root", "owned_by", "max_model_len") if k in entry}
        if served and self.settings.model not in served:
            client.close()
            raise ModelLoadError(
                f"{url} serves {self._redact(str(served))[:500]}, not {self.settings.model!r} (model.model)"
            )
        length = entry.get("max_model_len")
        if self.max_input_tokens is None and isinstance(length, int) and not isinstance(length, bool):
            # The context holds the prompt and the answer.
            self.max_input_tokens = max(length - self.max_new_tokens, 1)
        self._client = client
        self._word_tokens = {}

    def _attempt(self, client: Any, method: str, url: str, body: Optional[Dict[str, Any]]) -> Tuple[int, Any, bytes]:
        """One try: the status, headers and body. `timeout` is a deadline for the
        whole try, however slowly the server sends: httpx's timeouts bound each
        wait, and the body's arrival is checked against the deadline."""
        import httpx

        deadline = time.monotonic() + self.settings.timeout
        with client.stream(method, url, json=body, headers=self._headers()) as response:
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(
                        f"no whole answer within {self.settings.timeout:g} s (model.timeout)", request=response.request
                    )
            return response.status_code, response.headers, b"".join(chunks)

    def _send(
        self,
        client: Any,
        method: str,
        url: str,
        body: Optional[Dict[str, Any]],
        read: Optional[Callable[[Dict[str, Any]], Any]] = None,
    ) -> Any:
        """One call with retries: the decoded JSON object (or what `read` makes of
        it; `read` raises Malformed for an unusable one, which is retried), or a
        ServerError whose message holds no secret."""
        import httpx

        problem = ""
        for attempt in range(self.settings.max_retries + 1):
            wait = 0.0  # at least this long before the next try (Retry-After)
            try:
                status, headers, content = self._attempt(client, method, url, body)
            except httpx.TransportError as err:  # refused, reset, timed out
                problem = f"{type(err).__name__}: {err}"
                if isinstance(err, httpx.TimeoutException) and "model.timeout" not in problem:
                    problem += f" (a wait longer than model.timeout, {self.settings.timeout:g} s)"
            else:
                if status == 200:
                    try:
                        data = json.loads(content)
                        if not isinstance(data, dict):
                            raise Malformed("a body that is not a JSON object")
                    except (ValueError, RecursionError) as err:
                        problem = f"status 200 with a malformed body ({err}): {self._quote(content, 200)!r}"
                    else:
                        try:
                            return read(data) if read is not None else data
                        except Malformed as err:
                            problem = f"status 200 with {err}"
                elif status in RETRY_STATUSES:
                    problem = f"status {status}: {self._quote(content, 200)}"
                    wait = retry_after(headers.get("retry-after", ""))
                    if wait > MAX_BACKOFF:
                        problem += f" (it asks to retry after {wait:g} s, in Retry-After; this backend waits at most {MAX_BACKOFF:g} s)"
                        break
                else:
                    hint = " (check the key in model.api_key_env)" if status in (401, 403) else ""
                    raise ServerError(
                        self._redact(f"{method} {url} failed with status {status}{hint}: {self._quote(content, 500)}")
                    )
            if attempt < self.settings.max_retries:
                # Jitter keeps many clients from retrying in step.
                backoff = min(self.settings.backoff * 2**attempt, MAX_BACKOFF) * (0.5 + random.random() / 2)
                time.sleep(max(backoff, wait))
        tries = f"after {attempt + 1} attempt{'s' if attempt else ''}"
        raise ServerError(self._redact(f"{method} {url} failed {tries}; last: {problem}"))

    def fingerprint(self) -> Optional[str]:
        """What the server reports about the served model (its /v1/models entry)."""
        self.ensure_loaded()
        return json.dumps(self.__dict__.get("_served") or {}, sort_keys=True)

    # -- token counts ---------------------------------------------------------

    def _tokenize(self, body: Dict[str, Any]) -> Optional[List[int]]:
        """The server's /tokenize, or None when it has none (then a local tokenizer counts)."""
        if self._counter == "local":
            return None
        try:
            data = self._send(self._client, "POST", f"{self.root_url}/tokenize", {"model": self.settings.model, **body})
        except ServerError as err:
            if self._counter == "server" or not any(f"status {c}" in str(err) for c in (404, 405, 501)):
                raise
            self._counter = "local"
            return None
        tokens = data.get("tokens")
        text = body.get("prompt") or body.get("messages")
        if not isinstance(tokens, list) or (text and not tokens):
            # Another server's /tokenize (llama.cpp reads "content"): its counts cannot be used.
            if self._counter == "server":
                answer = self._redact(json.dumps(data))
                raise ServerError(f"{self.root_url}/tokenize answered without tokens: {answer[:200]}")
            self._counter = "local"
            return None
        self._counter = "server"
        return tokens

    def _local(self) -> Any:
        if self._local_tokenizer is None:
            if not self.settings.tokenizer:
                raise ModelLoadError(
                    f"{self.root_url} has no /tokenize endpoint: name a local tokenizer for this model "
                    "in model.tokenizer (a folder or hub id) so long docs can be split"
                )
            from transformers import AutoTokenizer

            from .loading import load_pretrained, trusts_remote_code

            self._local_tokenizer = load_pretrained(
                AutoTokenizer, self.settings.tokenizer, trust_remote_code=trusts_remote_code(self.settings.tokenizer)
            )
        return self._local_tokenizer

    def count_tokens(self, texts: Sequence[str]) -> List[int]:
        self.ensure_loaded()
        if self._word_tokens is None or len(self._word_tokens) > self.WORD_CACHE:
            self._word_tokens = {}
        cache = self._word_tokens
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing and self._counter != "local":

            def count(text: str) -> Optional[int]:
                ids = self._tokenize({"prompt": text, "add_special_tokens": False})
                return None if ids is None else len(ids)

            with ThreadPoolExecutor(self.settings.max_in_flight) as pool:
                counted = list(pool.map(count, missing))
            if all(c is not None for c in counted):
                cache.update(zip(missing, counted))
                missing = []
        if missing:
            ids = self._local()(missing, add_special_tokens=False)["input_ids"]
            cache.update((t, len(i)) for t, i in zip(missing, ids))
        return [cache[t] for t in texts]

    def messages(self, prompt: str) -> List[Dict[str, str]]:
        return chat_messages(prompt, self.settings.system_prompt)

    def prompt_tokens(self, prompt: str) -> int:
        self.ensure_loaded()
        extra = self._template_kwargs()
        ids = self._tokenize({"messages": self.messages(prompt), "add_generation_prompt": True, **extra})
        if ids is not None:
            return len(ids)
        tokenizer = self._local()
        kwargs = extra.get("chat_template_kwargs", {})
        text = tokenizer.apply_chat_template(
            self.messages(prompt), tokenize=False, add_generation_prompt=True, **kwargs
        )
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- generation -----------------------------------------------------------

    def _template_kwargs(self) -> Dict[str, Any]:
        return (
            {}
            if self.settings.thinking is None
            else {"chat_template_kwargs": {"enable_thinking": self.settings.thinking}}
        )

    def max_tokens(self, request: Request) -> int:
        """The request's `max_tokens`: with no reasoning to wait for (the answer is
        constrained to JSON, or thinking is off), the in-process backends' cap
        (`answer_cap`); else max_new_tokens."""
        cap = answer_cap(request.answer_budget)
        if cap is None or not (self.settings.constrained or self.settings.thinking is False):
            return self.max_new_tokens
        return min(self.max_new_tokens, cap)

    def body(self, request: Request) -> Dict[str, Any]:
        """The chat request sent for `request`."""
        body: Dict[str, Any] = {
            "model": self.settings.model,
            "messages": self.messages(request.prompt),
            "max_tokens": self.max_tokens(request),
            **self._template_kwargs(),
            **self.settings.generation,
        }
        if self.settings.logprobs:
            body["logprobs"] = True
        if self.settings.constrained and request.constraint is not None:  # (none: a label definition)
            schema = request.constraint.json_schema(self.settings.max_entity_words)
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "entities", "schema": schema}}
        return body

    def _completion(self, data: Dict[str, Any], runaway_cap: bool = False) -> Tuple[Answer, Any, bool]:
        """A chat completion's answer, its `usage` field and whether the server sent
        log-probabilities that could not be used; Malformed (a failed try) when
        there is no answer: no message, an empty one, or one cut at max_tokens
        (read, it would mean "no entities", and be cached as that).

        runaway_cap (bool): max_tokens was the runaway cap (`answer_cap`, twice
            the longest valid answer): an answer cut there repeats itself, and
            asking again under greedy decoding gives the same. It is read in
            part, as the in-process backends read theirs, and never cached."""
        choices = data.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise Malformed(f"a body without a message: {self._redact(json.dumps(data))[:300]}")
        cut = choice.get("finish_reason") == "length"
        if cut and not runaway_cap:
            raise Malformed("an answer cut at max_tokens (finish_reason 'length')")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise Malformed(f"an empty answer (content {json.dumps(content)[:50]})")
        logprobs = choice.get("logprobs")
        answer = answer_from_message(message, logprobs)
        if cut:
            answer.cacheable = False
        sent = isinstance(logprobs, dict) and bool(logprobs.get("content"))
        return answer, data.get("usage"), sent and not answer.token_scores

    def _complete(self, request: Request) -> Tuple[Any, Any, bool]:
        """One request's answer (or the exception it ended in), its token usage and
        whether its log-probabilities were unusable."""
        url = f"{self.settings.base_url}/chat/completions"
        try:
            body = self.body(request)
            read = functools.partial(self._completion, runaway_cap=body["max_tokens"] < self.max_new_tokens)
            return self._send(self._client, "POST", url, body, read=read)
        except ServerError as err:  # redacted already
            return err, None, False
        except Exception as err:  # noqa: BLE001 - the request's own failure, reported with its doc
            message = f"{type(err).__name__}: {err}"
            redacted = self._redact(message)
            return (err if redacted == message else ServerError(redacted)), None, False

    def generate(self, requests: Sequence[Request]) -> List[Any]:
        """One answer per request; a request that failed for good gives its exception."""
        with ThreadPoolExecutor(min(self.settings.max_in_flight, len(requests))) as pool:
            results = list(pool.map(self._complete, requests))
        stats = self.__dict__.setdefault("stats", Counter())  # counted here, not in the threads
        for _, usage, unusable in results:
            # The server's accounting is untrusted: a bad field counts as 0, and fails no doc.
            stats["prompt_tokens"] += token_count(usage, "prompt_tokens")
            stats["generated_tokens"] += token_count(usage, "completion_tokens")
            stats["logprobs_unusable"] += unusable
        return [answer for answer, _, _ in results]

    def close(self) -> None:
        """Close the connection pool (reopened on next use)."""
        with self.lock:
            if self._client is not None:
                self._client.close()
            self._client = None
