"""A tiny Llama-architecture chat model that tests build themselves, offline, in well under 1 s.

`build_tiny_model(directory)` writes the same model twice:
- `model_dir`: a transformers directory (config, safetensors weights, generation config, a
  byte-level BPE tokenizer with a ChatML chat template), loadable with `from_pretrained`;
- `gguf_path`: a float32 GGUF with the tokenizer in its metadata (`gpt2` model, `gpt-2`
  pre-tokenizer, merges, chat template), loadable by llama.cpp and by transformers'
  `from_pretrained(dir, gguf_file=...)`.

The tokenizer is trained with the `tokenizers` library on the built-in text below, so every
id is reproducible. The weights are random with a fixed seed and scaled up from the usual
init so that the logits are far apart: greedy decoding then picks the same token whether a
sequence runs alone or in a padded batch (near-ties would differ in the last bits).

Special tokens mirror SmolLM2's: `<|endoftext|>` (0), `<|im_start|>` (1), `<|im_end|>` (2,
the EOS of a chat turn).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
EOS_TOKEN_ID = 2
VOCAB_SIZE = 384
CONTEXT_TOKENS = 512
GGUF_NAME = "tiny-llama.f32.gguf"

# ChatML, as SmolLM2-Instruct uses (without its default system prompt, to keep prompts short).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CORPUS = """\
The quick brown fox jumps over the lazy dog. A small red hen counts golden seeds beneath tall
green trees, and seven silver fish swim past old stone bridges near quiet mills.
What is the capital of France? The capital of France is Paris. Berlin is the capital of
Germany, Rome is the capital of Italy and Madrid is the capital of Spain.
Hello! How can I help you today? I am a helpful assistant. Please tell me more about it.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024. Symbols: , . ; : ! ? ( ) [ ] { } " ' - + * / = #
Accents and more: café, naïve, über, señor, déjà vu, 東京, ☃, 🙂.
"""


@dataclass(frozen=True, slots=True)
class TinyModel:
    """Where the tiny model was written, and the facts tests need about it."""

    model_dir: Path
    gguf_path: Path
    eos_token_id: int = EOS_TOKEN_ID
    context_tokens: int = CONTEXT_TOKENS
    vocab_size: int = VOCAB_SIZE


_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": CONTEXT_TOKENS,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "bos_token_id": 0,
    "eos_token_id": EOS_TOKEN_ID,
    "pad_token_id": 0,
    "initializer_range": 0.02,
}
_WEIGHT_SCALE = 20.0  # times the usual init: decisive logits, see the module docstring
_SEED = 1234


def build_tiny_model(directory: Path, *, context_tokens: int = CONTEXT_TOKENS) -> TinyModel:
    """Writes the tiny model under `directory` (created if missing) and describes it.

    `context_tokens` is the trained context (max_position_embeddings); the weights do not
    depend on it (rotary positions), so a longer one costs nothing.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config = {**_CONFIG, "max_position_embeddings": context_tokens}
    model_dir = directory / "tiny-llama"
    tokenizer_json = _train_tokenizer()
    state = _write_transformers_dir(model_dir, tokenizer_json, config)
    gguf_path = directory / GGUF_NAME
    _write_gguf(gguf_path, state, tokenizer_json, config)
    return TinyModel(model_dir=model_dir, gguf_path=gguf_path, context_tokens=context_tokens)


def _train_tokenizer() -> dict[str, Any]:
    """A byte-level BPE (GPT-2 style) trained on `_CORPUS`; returns its tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    data: dict[str, Any] = json.loads(tokenizer.to_str())
    if len(data["model"]["vocab"]) > VOCAB_SIZE:
        raise AssertionError("the trained vocabulary outgrew VOCAB_SIZE")
    return data


def _write_transformers_dir(
    model_dir: Path, tokenizer_json: dict[str, Any], cfg: dict[str, Any]
) -> dict[str, Any]:
    """Saves config, weights and tokenizer with transformers; returns the float32 state dict."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    model_dir.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(**cfg)
    generator = torch.Generator().manual_seed(_SEED)
    model = LlamaForCausalLM(config)
    state: dict[str, Any] = {}
    for name, meta in model.state_dict().items():
        if name.endswith("norm.weight"):
            state[name] = torch.ones(meta.shape)
        else:
            std = cfg["initializer_range"] * _WEIGHT_SCALE / max(1.0, meta.shape[-1] / 64)
            state[name] = torch.randn(meta.shape, generator=generator) * std
    model.load_state_dict(state)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=0, eos_token_id=EOS_TOKEN_ID, pad_token_id=0, do_sample=False
    )
    model.save_pretrained(model_dir)
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json), encoding="utf-8")
    (model_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": SPECIAL_TOKENS[0],
                "eos_token": SPECIAL_TOKENS[EOS_TOKEN_ID],
                "pad_token": SPECIAL_TOKENS[0],
                "unk_token": SPECIAL_TOKENS[0],
                "additional_special_tokens": list(SPECIAL_TOKENS[1:]),
                "model_max_length": cfg["max_position_embeddings"],
                "clean_up_tokenization_spaces": False,
                "chat_template": CHAT_TEMPLATE,
            }
        ),
        encoding="utf-8",
    )
    return state


def _permute_for_gguf(weights: Any, n_head: int) -> Any:
    """HF rotary halves -> llama.cpp's interleaved pairs (convert_hf_to_gguf's `permute`)."""
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _write_gguf(
    path: Path, state: dict[str, Any], tokenizer_json: dict[str, Any], cfg: dict[str, Any]
) -> None:
    import gguf
    import numpy as np

    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(cfg["hidden_size"] // n_head)
    writer.add_rope_freq_base(cfg["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    writer.add_vocab_size(cfg["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    vocab: dict[str, int] = tokenizer_json["model"]["vocab"]
    tokens = [""] * cfg["vocab_size"]
    types = [gguf.TokenType.UNUSED] * cfg["vocab_size"]
    for token, index in vocab.items():
        tokens[index] = token
        types[index] = gguf.TokenType.NORMAL
    for index in range(len(SPECIAL_TOKENS)):
        types[index] = gguf.TokenType.CONTROL
    for index in range(len(vocab), cfg["vocab_size"]):
        tokens[index] = f"[PAD{index}]"
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(EOS_TOKEN_ID)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    def add(name: str, tensor: Any) -> None:
        writer.add_tensor(name, np.ascontiguousarray(tensor.numpy().astype(np.float32)))

    add("token_embd.weight", state["model.embed_tokens.weight"])
    add("output_norm.weight", state["model.norm.weight"])
    add("output.weight", state["lm_head.weight"])
    for i in range(cfg["num_hidden_layers"]):
        hf = f"model.layers.{i}."
        add(f"blk.{i}.attn_norm.weight", state[hf + "input_layernorm.weight"])
        add(
            f"blk.{i}.attn_q.weight",
            _permute_for_gguf(state[hf + "self_attn.q_proj.weight"], n_head),
        )
        add(
            f"blk.{i}.attn_k.weight", _permute_for_gguf(state[hf + "self_attn.k_proj.weight"], n_kv)
        )
        add(f"blk.{i}.attn_v.weight", state[hf + "self_attn.v_proj.weight"])
        add(f"blk.{i}.attn_output.weight", state[hf + "self_attn.o_proj.weight"])
        add(f"blk.{i}.ffn_norm.weight", state[hf + "post_attention_layernorm.weight"])
        add(f"blk.{i}.ffn_gate.weight", state[hf + "mlp.gate_proj.weight"])
        add(f"blk.{i}.ffn_up.weight", state[hf + "mlp.up_proj.weight"])
        add(f"blk.{i}.ffn_down.weight", state[hf + "mlp.down_proj.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
