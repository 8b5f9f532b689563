"""The OpenAI-compatible server backend, against real servers on 127.0.0.1:
vLLM's CPU build serving the packaged Qwen2.5-Coder-0.5B (when its environment
exists: scripts/vllm_venv.sh, which .ci/run runs), and a small misbehaving
server (tests/backends/openai_stub.py) for the faults vLLM will not make on demand."""

import json
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import spacy

from spacy_recot.backends import ModelLoadError
from spacy_recot.backends.openai_api import ServerError, answer_from_message, content_token_scores
from spacy_recot.backends.server import OpenAICompatibleBackend
from spacy_recot.backends.vllm import local_vllm, running_server, stop_process, vllm_python
from spacy_recot.cache import ResponseCache
from spacy_recot.chunks import Chunk, Request
from spacy_recot.labels import definition_prompt
from spacy_recot.net import free_port

STUB = Path(__file__).with_name("openai_stub.py")
SENTENCES = ["Barack Obama visited Paris.", "Angela Merkel met Macron in Berlin.", "Tim Cook works in Cupertino."]


def stub_command(port: int):
    return [sys.executable, str(STUB), str(port)]


@pytest.fixture(scope="module")
def stub():
    port = free_port()
    with running_server(stub_command(port), f"http://127.0.0.1:{port}/health", timeout=60):
        yield f"http://127.0.0.1:{port}"


def control(stub: str, **settings):
    defaults = {"fail": 0, "fail_status": 500, "slow": 0, "malformed": 0, "fail_match": None}
    defaults.update({"echo": 0, "echo_status": 500, "cut": 0, "cut_as": "null", "trickle": 0, "retry_after": 0})
    defaults.update({"key": None, "reasoning": None, "tokenize": True, "usage": None, "logprob": -0.1})
    httpx.post(f"{stub}/control", json={**defaults, **settings}).raise_for_status()


def stats(stub: str):
    return httpx.get(f"{stub}/stats").json()


def stub_nlp(stub: str, **model):
    nlp = spacy.blank("en")
    config = {"@misc": "spacy_recot.OpenAICompatible.v1", "base_url": f"{stub}/v1", "model": "stub"}
    # A generous deadline: a loaded machine must not turn a slow stub into a failed try.
    config.update({"backoff": 0.01, "timeout": 30.0, **model})
    nlp.add_pipe("recot_ner", config={"labels": ["person", "location"], "model": config})
    return nlp


# -- reading answers ------------------------------------------------------------


def test_token_scores_follow_bytes_split_inside_a_character():
    content = '{"person": ["Zoë"]}'
    raw = content.encode()
    split = raw.index("ë".encode()) + 1  # the two bytes of ë in two tokens
    tokens = [raw[:split], raw[split:], "<|im_end|>".encode()]
    logprobs = {"content": [{"token": "?", "logprob": -0.5, "bytes": list(t)} for t in tokens]}
    scores = content_token_scores(content, logprobs)
    assert [(s, e) for s, e, _ in scores] == [(0, split - 1), (split - 1, len(content))]
    assert content_token_scores("other text", logprobs) == []


def test_reasoning_becomes_a_think_block_and_scores_shift():
    message = {"content": '{"entities": {}}', "reasoning_content": "No names here."}
    logprobs = {"content": [{"token": t, "logprob": -0.1, "bytes": list(t.encode())} for t in ['{"entities"', ": {}}"]]}
    answer = answer_from_message(message, logprobs)
    assert str(answer) == '<think>No names here.</think>\n{"entities": {}}'
    start = len("<think>No names here.</think>\n")
    assert answer.token_scores[0][:2] == (start, start + len('{"entities"'))
    assert str(answer_from_message({"content": "x", "reasoning": "why"}, None)) == "<think>why</think>\nx"


# -- settings and bad input -------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"base_url": "127.0.0.1:8000"}, "base_url"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_settings_name_their_key(kwargs, key):
    settings = {"base_url": "http://127.0.0.1:1/v1", "model": "m", **kwargs}
    with pytest.raises(ValueError, match=f"model.{key}"):
        OpenAICompatibleBackend(settings.pop("base_url"), settings.pop("model"), **settings)


def test_unreachable_server_fails_at_load_naming_the_url():
    port = free_port()  # nothing listens there
    backend = OpenAICompatibleBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff=0.01)
    with pytest.raises(ModelLoadError, match=f"127.0.0.1:{port}/v1/models"):
        backend.load()


def test_unknown_model_lists_what_is_served(stub):
    control(stub)
    with pytest.raises(ModelLoadError, match=r"serves \['stub'\], not 'other'"):
        OpenAICompatibleBackend(f"{stub}/v1", "other").load()


def test_api_key_read_from_the_environment_and_never_saved(stub, monkeypatch, tmp_path):
    control(stub, key="sk-secret-123")
    nlp = stub_nlp(stub, api_key_env="RECOT_TEST_KEY")
    with pytest.raises(ModelLoadError, match="RECOT_TEST_KEY"):
        nlp("Barack Obama visited Paris.")
    monkeypatch.setenv("RECOT_TEST_KEY", "wrong")
    with pytest.raises(ServerError, match="status 401.*model.api_key_env"):
        nlp("Barack Obama visited Paris.")
    assert stats(stub)["chat"] == 1  # a 401 is not retried
    monkeypatch.setenv("RECOT_TEST_KEY", "sk-secret-123")
    doc = nlp("Barack Obama visited Paris.")
    assert [(e.text, e.label_) for e in doc.ents] == [("Barack", "person")]
    assert stats(stub)["authorized"] == 1
    nlp.to_disk(tmp_path / "pipeline")
    for path in (tmp_path / "pipeline").rglob("*"):
        if path.is_file():
            assert b"sk-secret-123" not in path.read_bytes(), path
    assert "sk-secret-123" not in nlp.config.to_str()


def _messages(err: BaseException):
    """The error's message and those of every error it was raised from or in."""
    while err is not None:
        yield f"{type(err).__name__}: {err}"
        err = err.__cause__ or err.__context__


@pytest.mark.parametrize("status", [400, 500])
def test_the_api_key_never_reaches_an_error_message(stub, monkeypatch, status):
    """A server (or a proxy) that echoes the request's headers in an error body."""
    control(stub, key="sk-secret-123", echo=100, echo_status=status)
    monkeypatch.setenv("RECOT_TEST_KEY", "sk-secret-123")
    backend = OpenAICompatibleBackend(f"{stub}/v1", "stub", api_key_env="RECOT_TEST_KEY", max_retries=1, backoff=0.01)
    with pytest.raises(ModelLoadError) as failed:
        backend.load()  # GET /v1/models
    messages = list(_messages(failed.value))
    assert "/v1/models" in messages[0] and f"status {status}" in messages[0]
    control(stub, key="sk-secret-123")
    nlp = stub_nlp(stub, api_key_env="RECOT_TEST_KEY", max_retries=1)
    nlp.get_pipe("recot_ner").model.load()
    control(stub, key="sk-secret-123", echo=100, echo_status=status)
    errors = []
    nlp.set_error_handler(lambda name, proc, docs, err: errors.append(err))
    assert list(nlp.pipe(SENTENCES[:1])) == []
    messages += [m for err in errors for m in _messages(err)]
    assert any("/v1/chat/completions" in m for m in messages)
    for message in messages:
        assert "sk-secret-123" not in message and "Bearer" not in message, message
    assert any('"authorization": "***"' in m.lower() for m in messages)


def test_a_key_is_never_put_in_the_url():
    with pytest.raises(ValueError, match="model.api_key_env"):
        OpenAICompatibleBackend("http://user:sk-secret@127.0.0.1:1/v1", "m")


def test_redact_covers_headers_bearer_tokens_and_the_key():
    from spacy_recot.backends.openai_api import redact

    text = 'Authorization: Bearer sk-1\r\n{"authorization": "Basic dXNlcjpw"} token sk-1 bearer abc'
    assert redact(text, ["sk-1"]) == 'Authorization: ***\r\n{"authorization": "***"} token *** bearer ***'
    assert redact("nothing secret", ["sk-1"]) == "nothing secret"


# -- faults: retries, then spaCy's error handler ------------------------------------


def test_500s_are_retried(stub):
    control(stub, fail=2)
    docs = list(stub_nlp(stub, max_in_flight=1).pipe(SENTENCES))
    assert [[e.text for e in d.ents] for d in docs] == [["Barack"], ["Angela"], ["Tim"]]
    assert stats(stub)["chat"] == len(SENTENCES) + 2


def test_malformed_bodies_are_retried(stub):
    control(stub, malformed=2)
    docs = list(stub_nlp(stub, max_in_flight=1).pipe(SENTENCES))
    assert [len(d.ents) for d in docs] == [1, 1, 1]
    assert stats(stub)["chat"] == len(SENTENCES) + 2


def test_slow_answers_time_out_then_retry(stub):
    control(stub, slow=1, slow_seconds=6.0)
    doc = stub_nlp(stub, timeout=2.0)("Barack Obama visited Paris.")
    assert [e.text for e in doc.ents] == ["Barack"]
    assert stats(stub)["chat"] >= 2  # the slow one, then a retry (more if the machine is slow)


def test_lasting_failure_reaches_the_error_handler_doc_by_doc(stub):
    control(stub, fail_match="Angela")
    nlp = stub_nlp(stub, max_retries=2)
    failed = []
    nlp.set_error_handler(lambda name, proc, docs, err: failed.append(([d.text for d in docs], err)))
    done = list(nlp.pipe(SENTENCES))
    assert [d.text for d in done] == [SENTENCES[0], SENTENCES[2]]
    assert all(d.ents for d in done)
    assert [texts for texts, _ in failed] == [[SENTENCES[1]]]
    err = failed[0][1]
    assert isinstance(err, ServerError) and "/v1/chat/completions" in str(err) and "status 500" in str(err)
    assert "after 3 attempts" in str(err)
    # Without a handler, spaCy's default raises the error.
    with pytest.raises(ServerError, match="status 500"):
        stub_nlp(stub, max_retries=0)(SENTENCES[1])


def test_failed_answers_are_not_cached(stub, tmp_path):
    control(stub, fail_match="Angela")
    nlp = stub_nlp(stub, max_retries=0)
    nlp.get_pipe("recot_ner").cache = ResponseCache(tmp_path)
    nlp.set_error_handler(lambda *args: None)
    assert len(list(nlp.pipe(SENTENCES))) == 2
    control(stub)
    assert [d.ents[0].text for d in nlp.pipe(SENTENCES)] == ["Barack", "Angela", "Tim"]
    assert stats(stub)["chat"] == 1  # only the failed one is asked again


@pytest.mark.parametrize("cut_as", ["null", "empty", "length"])
def test_empty_or_cut_answers_are_failed_requests(stub, tmp_path, cut_as):
    # Retried: the second try answers.
    control(stub, cut=1, cut_as=cut_as)
    doc = stub_nlp(stub, max_in_flight=1)(SENTENCES[0])
    assert [e.text for e in doc.ents] == ["Barack"] and stats(stub)["chat"] == 2
    # For good: the doc goes to the error handler and nothing is cached...
    control(stub, cut=100, cut_as=cut_as)
    nlp = stub_nlp(stub, max_retries=1)
    nlp.get_pipe("recot_ner").cache = ResponseCache(tmp_path)
    errors = []
    nlp.set_error_handler(lambda name, proc, docs, err: errors.append(err))
    assert list(nlp.pipe(SENTENCES[:1])) == []
    assert len(errors) == 1 and isinstance(errors[0], ServerError)
    assert ("length" if cut_as == "length" else "empty answer") in str(errors[0])
    assert not [p for p in tmp_path.rglob("*.json")]
    # ... so once the server heals, the answer is asked for again.
    control(stub)
    assert [e.text for e in nlp(SENTENCES[0]).ents] == ["Barack"] and stats(stub)["chat"] == 1


def test_an_answer_cut_at_the_runaway_cap_is_read_in_part_and_never_cached(stub, tmp_path):
    # With thinking off, max_tokens is the runaway cap (twice the longest valid
    # answer): a cut there would come again on every try, so it is read as the
    # in-process backends read theirs, and not kept in the cache.
    control(stub, cut=100, cut_as="length")
    nlp = stub_nlp(stub, thinking=False, max_retries=2)
    nlp.get_pipe("recot_ner").cache = ResponseCache(tmp_path)
    errors = []
    nlp.set_error_handler(lambda name, proc, docs, err: errors.append(err))
    docs = list(nlp.pipe(SENTENCES[:1]))
    assert len(docs) == 1 and not errors and stats(stub)["chat"] == 1
    assert not [p for p in tmp_path.rglob("*.json")]


@pytest.mark.parametrize("usage", ["many", [1, 2], {"prompt_tokens": "x", "completion_tokens": [3]}, None])
def test_a_bad_usage_field_fails_no_doc(stub, usage):
    control(stub, usage=usage if usage is not None else {"prompt_tokens": -5})
    nlp = stub_nlp(stub)
    docs = list(nlp.pipe(SENTENCES))
    assert [[e.text for e in d.ents] for d in docs] == [["Barack"], ["Angela"], ["Tim"]]
    stats_ = nlp.get_pipe("recot_ner").model.stats
    assert stats_["prompt_tokens"] == 0 and stats_["requests"] == len(SENTENCES)


@pytest.mark.parametrize("logprob", ["nan", 48.0, "inf"])
def test_scores_from_a_server_are_probabilities_or_none(stub, logprob):
    control(stub, logprob=logprob)
    nlp = stub_nlp(stub)
    doc = nlp(SENTENCES[0])
    record = doc.user_data["recot"]["recot_ner"]
    assert [e["text"] for e in record["entities"]] == ["Barack"]
    assert "score" not in record["entities"][0]  # unusable log-probabilities give no score
    json.dumps(record, allow_nan=False)
    assert nlp.get_pipe("recot_ner").model.stats["logprobs_unusable"] == 1
    control(stub, logprob=-0.0)
    assert nlp(SENTENCES[0]).user_data["recot"]["recot_ner"]["entities"][0]["score"] == 1.0


def test_the_timeout_is_a_deadline_for_a_trickled_answer(stub):
    """A server that sends its answer a byte at a time (each byte well within
    the timeout) is cut off at the timeout, not when it is done."""
    control(stub, trickle=100)  # every try: about 2.5 s of trickling, 0.05 s a byte
    nlp = stub_nlp(stub, timeout=0.5, max_retries=1)
    errors = []
    nlp.set_error_handler(lambda name, proc, docs, err: errors.append(err))
    start = time.monotonic()
    assert list(nlp.pipe(SENTENCES[:1])) == []
    assert time.monotonic() - start < 4.0  # two tries of 0.5 s, with a generous margin
    assert len(errors) == 1 and "model.timeout" in str(errors[0]) and "after 2 attempts" in str(errors[0])


def test_retry_after_is_a_minimum_wait(stub):
    control(stub, retry_after=1, retry_after_value="1")
    doc = stub_nlp(stub, backoff=0.01)(SENTENCES[0])
    assert [e.text for e in doc.ents] == ["Barack"]
    first, second = stats(stub)["times"]
    assert second - first >= 1.0  # not the 0.01 s backoff
    # A wait longer than the backend ever waits fails now instead of holding the doc.
    control(stub, retry_after=10, retry_after_value="3600")
    nlp = stub_nlp(stub, backoff=0.01)
    with pytest.raises(ServerError, match="Retry-After"):
        nlp(SENTENCES[0])
    assert stats(stub)["chat"] == 1


def test_server_killed_mid_batch_loses_no_doc():
    port = free_port()
    with running_server(stub_command(port), f"http://127.0.0.1:{port}/health", timeout=60) as process:
        base = f"http://127.0.0.1:{port}"
        control(base, slow=100, slow_seconds=30.0)
        nlp = stub_nlp(base, max_retries=1, timeout=60.0)
        nlp.get_pipe("recot_ner").model.load()
        failed, done = [], []
        nlp.set_error_handler(lambda name, proc, docs, err: failed.append(([d.text for d in docs], err)))
        worker = threading.Thread(target=lambda: done.extend(nlp.pipe(SENTENCES)))
        worker.start()
        deadline = time.monotonic() + 30
        while stats(base)["chat"] < len(SENTENCES) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop_process(process)  # every request of the batch is in flight
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert done == []
    assert sorted(t for texts, _ in failed for t in texts) == sorted(SENTENCES)
    assert all(isinstance(err, ServerError) and f"127.0.0.1:{port}" in str(err) for _, err in failed)


# -- what the stub answers: reasoning, tokens ------------------------------------------


def test_reasoning_content_is_the_rationale(stub):
    control(stub, reasoning="Barack is a first name.")
    doc = stub_nlp(stub)("Barack Obama visited Paris.")
    record = doc.user_data["recot"]["recot_ner"]
    assert record["rationale"] == "Barack is a first name."
    assert record["entities"][0]["score"] == pytest.approx(0.9048, abs=1e-3)  # exp(-0.1)


def test_long_docs_split_with_the_servers_token_counts(stub):
    control(stub)
    nlp = stub_nlp(stub, max_input_tokens=120)
    text = " ".join(["Barack Obama visited Paris ."] * 30)
    doc = nlp(text)
    assert stats(stub)["tokenize"] > 0
    assert stats(stub)["chat"] > 1
    # The stub names each chunk's first word: one entity per chunk, where it lies.
    assert len(doc.ents) == stats(stub)["chat"]
    assert {e.text for e in doc.ents} <= {"Barack", "Obama", "visited", "Paris"}


def test_without_tokenize_endpoint_a_local_tokenizer_counts(stub, trained_qwen3_dir):
    from transformers import AutoTokenizer

    control(stub, tokenize=False)
    nlp = stub_nlp(stub, max_input_tokens=200, tokenizer=str(trained_qwen3_dir))
    text = " ".join(["Barack Obama visited Paris ."] * 30)
    doc = nlp(text)
    assert stats(stub)["tokenize"] == 0 and stats(stub)["chat"] > 1
    assert len(doc.ents) == stats(stub)["chat"]
    backend = nlp.get_pipe("recot_ner").model
    local = AutoTokenizer.from_pretrained(trained_qwen3_dir)
    assert backend.count_tokens(["Obama", "visited"]) == [
        len(local(w, add_special_tokens=False)["input_ids"]) for w in ["Obama", "visited"]
    ]
    assert "model.tokenizer" not in str(backend.requirements()) and "transformers>=5.0,<6" in backend.requirements()


def test_a_tokenize_endpoint_that_gives_no_tokens_is_not_trusted(stub, trained_qwen3_dir):
    control(stub, tokenize="empty")
    nlp = stub_nlp(stub, max_input_tokens=200, tokenizer=str(trained_qwen3_dir))
    doc = nlp(" ".join(["Barack Obama visited Paris ."] * 30))
    assert stats(stub)["chat"] > 1 and len(doc.ents) == stats(stub)["chat"]  # split by local counts


def test_a_broken_tokenize_endpoint_sends_the_docs_to_the_error_handler(stub):
    control(stub, tokenize="broken")
    nlp = stub_nlp(stub, max_input_tokens=200, max_retries=1)
    failed = []
    nlp.set_error_handler(lambda name, proc, docs, err: failed.append(([d.text for d in docs], err)))
    assert list(nlp.pipe(SENTENCES)) == []
    assert sorted(t for texts, _ in failed for t in texts) == sorted(SENTENCES)
    assert all("/tokenize" in str(err) and "status 500" in str(err) for _, err in failed)
    assert stats(stub)["chat"] == 0


def test_without_tokenize_endpoint_a_local_tokenizer_is_needed(stub):
    control(stub, tokenize=False)
    with pytest.raises(ModelLoadError, match="no /tokenize endpoint.*model.tokenizer"):
        stub_nlp(stub, max_input_tokens=120)("Barack Obama visited Paris.")


# -- a real vLLM server --------------------------------------------------------------------

needs_vllm = pytest.mark.skipif(vllm_python() is None, reason="no vLLM environment (scripts/vllm_venv.sh)")


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    from spacy_recot.backends.packaged import materialize

    model_dir = materialize("qwen2.5-coder-0.5b-instruct")
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with local_vllm(str(model_dir), served_name="qwen", log=str(log)) as url:
        yield url, model_dir


@pytest.mark.slow
@needs_vllm
def test_vllm_constrained_answers(vllm):
    url, _ = vllm
    nlp = spacy.blank("en")
    model = {"@misc": "spacy_recot.OpenAICompatible.v1", "base_url": url, "model": "qwen", "constrained": True}
    nlp.add_pipe("recot_ner", config={"labels": ["person", "location"], "model": model, "store_io": True})
    docs = list(nlp.pipe(SENTENCES))
    for doc in docs:
        record = doc.user_data["recot"]["recot_ner"]
        answer = json.loads(record["io"][0]["output"])  # valid JSON, by the schema
        assert set(answer["entities"]) <= {"person", "location"}
        for texts in answer["entities"].values():
            assert all(t in doc.text for t in texts)
        assert all(0 < e["score"] <= 1 for e in record["entities"])
    assert ("Barack Obama", "person") in [(e.text, e.label_) for e in docs[0].ents]


@pytest.mark.slow
@needs_vllm
def test_vllm_token_counts_match_the_local_tokenizer(vllm):
    from transformers import AutoTokenizer

    url, model_dir = vllm
    backend = OpenAICompatibleBackend(url, "qwen")
    backend.load()
    assert backend.max_input_tokens == 2048 - 1024  # the context minus the answer
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    words = ["Barack", "Obama", "visited", "Cupertino", "Zoë", "—"]
    assert backend.count_tokens(words) == [len(tokenizer(w, add_special_tokens=False)["input_ids"]) for w in words]
    prompt = "Find the people in: Barack Obama visited Paris."
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    assert backend.prompt_tokens(prompt) == len(tokenizer(chat, add_special_tokens=False)["input_ids"])


def test_per_label_questions_send_one_request_per_label(stub):
    control(stub)
    nlp = stub_nlp(stub)
    nlp.get_pipe("recot_ner").prompt = spacy.util.registry.misc.get("spacy_recot.ZeroShotJSONPrompt.v1")(
        questions="per_label"
    )
    docs = list(nlp.pipe(SENTENCES))
    assert stats(stub)["chat"] == 2 * len(SENTENCES)
    # Both questions name the first word as a person: one entity, found twice, kept once.
    assert [[(e.text, e.label_) for e in d.ents] for d in docs] == [[(t.split()[0], "person")] for t in SENTENCES]


def test_answers_without_reasoning_are_capped_like_in_process(stub):
    control(stub)
    pipe = stub_nlp(stub, constrained=True, max_new_tokens=1000).get_pipe("recot_ner")
    (request,) = pipe.requests_for(spacy.blank("en").make_doc(SENTENCES[0]))
    # The in-process rule (spacy_recot.backends.answer_cap): twice the budget plus 16.
    assert request.answer_budget and pipe.model.body(request)["max_tokens"] == 2 * request.answer_budget + 16
    free = stub_nlp(stub, max_new_tokens=1000).get_pipe("recot_ner")  # may think first: no cap
    assert free.model.body(free.requests_for(spacy.blank("en").make_doc(SENTENCES[0]))[0])["max_tokens"] == 1000


def test_label_definitions_are_asked_without_the_answer_schema(stub):
    """A constrained server backend sends the entity-list JSON schema with each
    entity request; a label definition is free text, so it goes without one."""
    control(stub)
    pipe = stub_nlp(stub, constrained=True).get_pipe("recot_ner")
    pipe.initialize()
    before = stats(stub)["chat"]
    described = pipe.describe_labels()
    assert set(described) == {"person", "location"}
    assert stats(stub)["chat"] - before == 2
    (entity_request,) = pipe.requests_for(spacy.blank("en").make_doc(SENTENCES[0]))
    assert "response_format" in pipe.model.body(entity_request)
    assert "Entity type definitions:" in entity_request.prompt
    definition = Request(definition_prompt("person", ["person", "location"]), Chunk("", [], []))
    assert "response_format" not in pipe.model.body(definition)
