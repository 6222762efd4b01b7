"""A tiny llama-architecture model for llama.cpp, written with the `gguf` package.

The real-server tests (tests/_llama.py) need a model file, and the project ships none: this
module writes one from numpy arrays in well under a second. It has random weights (it talks
nonsense, fast, on one CPU thread) and a byte-level SentencePiece vocabulary: the 256 bytes
as `<0xNN>` byte tokens plus `<unk>`, `<s>` (BOS) and `</s>` (EOS), so any text tokenizes
and a reply can hold part of a UTF-8 character.

What llama.cpp needs from such a file (found by trying the shared `llama-server` build):

- `general.architecture = "llama"` and the `llama.*` hyperparameters: context length,
  embedding length, block count, feed-forward length, head counts, RMS-norm epsilon and the
  rope dimension (the head size, 64 / 4 = 16);
- a tokenizer: `tokenizer.ggml.model = "llama"` (SentencePiece) with tokens, scores and
  token types (UNKNOWN, CONTROL, BYTE), and the unk/BOS/EOS ids;
- the tensors of each block (`blk.N.attn_norm`, `attn_q`, `attn_k`, `attn_v`,
  `attn_output`, `ffn_norm`, `ffn_gate`, `ffn_up`, `ffn_down`) plus `token_embd`,
  `output_norm` and `output`, all float32. numpy shapes are (rows, columns), which gguf
  stores reversed as ggml's (ne0, ne1): `token_embd` is (vocab, width).

The weights come from a seeded generator, so the same spec writes the same bytes, and the
file is named by a hash of its spec: one file per spec per directory, written once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

__all__ = ["TinyModelSpec", "write_tiny_model"]

_FORMAT_VERSION = 1  # bump when the writer below changes what it writes


@dataclasses.dataclass(frozen=True)
class TinyModelSpec:
    """The shape of the tiny model.

    Attributes:
        layers: Transformer blocks.
        width: Embedding width.
        heads: Attention heads (and key/value heads: no grouped-query attention).
        feed_forward: Width of each block's feed-forward layer.
        context: Training context (`llama.context_length`): the most tokens a slot can hold.
        seed: Seed of the random weights.
    """

    layers: int = 2
    width: int = 64
    heads: int = 4
    feed_forward: int = 128
    context: int = 2048
    seed: int = 1

    @property
    def digest(self) -> str:
        """A short hash of the spec and of the writer's format version."""
        payload = json.dumps(
            {"format": _FORMAT_VERSION, **dataclasses.asdict(self)}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte (byte-level BPE vocabularies use these)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def _vocabulary() -> tuple[list[str], list[int]]:
    import gguf

    tokens = [*_byte_symbols(), "<unk>", "<s>", "</s>"]
    types = [int(gguf.TokenType.NORMAL)] * 256 + [
        int(gguf.TokenType.UNKNOWN),
        int(gguf.TokenType.CONTROL),
        int(gguf.TokenType.CONTROL),
    ]
    return tokens, types


def write_tiny_model(directory: Path, spec: TinyModelSpec | None = None) -> Path:
    """Write the model into `directory` (once: an existing file of the same spec is reused).

    Args:
        directory: Where to put the file; created if missing.
        spec: The model's shape; the default is the one the real-server tests use.

    Returns:
        The path of the `.gguf` file, named by the spec's digest.
    """
    import gguf
    import numpy as np

    spec = spec or TinyModelSpec()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"tiny-{spec.digest}.gguf"
    if path.exists():
        return path

    tokens, types = _vocabulary()
    vocab = len(tokens)
    rng = np.random.RandomState(spec.seed)  # legacy generator: its stream never changes

    def weight(*shape: int) -> object:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    def ones(n: int) -> object:
        return np.ones(n, dtype=np.float32)

    partial = path.with_suffix(".partial")
    writer = gguf.GGUFWriter(str(partial), "llama")
    writer.add_name("surge-tiny")
    writer.add_context_length(spec.context)
    writer.add_embedding_length(spec.width)
    writer.add_block_count(spec.layers)
    writer.add_feed_forward_length(spec.feed_forward)
    writer.add_head_count(spec.heads)
    writer.add_head_count_kv(spec.heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(spec.width // spec.heads)
    writer.add_vocab_size(vocab)
    writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(["<s> </s>"])
    writer.add_unk_token_id(256)
    writer.add_bos_token_id(257)
    writer.add_eos_token_id(258)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    writer.add_tensor("token_embd.weight", weight(vocab, spec.width))
    for n in range(spec.layers):
        blk = f"blk.{n}"
        writer.add_tensor(f"{blk}.attn_norm.weight", ones(spec.width))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{blk}.{name}.weight", weight(spec.width, spec.width))
        writer.add_tensor(f"{blk}.ffn_norm.weight", ones(spec.width))
        writer.add_tensor(f"{blk}.ffn_gate.weight", weight(spec.feed_forward, spec.width))
        writer.add_tensor(f"{blk}.ffn_up.weight", weight(spec.feed_forward, spec.width))
        writer.add_tensor(f"{blk}.ffn_down.weight", weight(spec.width, spec.feed_forward))
    writer.add_tensor("output_norm.weight", ones(spec.width))
    writer.add_tensor("output.weight", weight(vocab, spec.width))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(path)  # atomic: a concurrent reader never sees half a file
    return path
