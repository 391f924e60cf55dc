"""A cached CLIP text tower: the text encoder as ONNX plus its tokenizer, so a text query needs no torch.

A cold ``pixel-detective search "a dog"`` spent most of its time importing torch and open_clip and
loading both towers. After a full CLIP load, ``export_text_tower`` writes the text encoder (ONNX) and
the BPE tokenizer (a ``tokenizers`` JSON) under the data directory, verified against the loaded model
on probe texts; ``load_text_tower`` then encodes queries with onnxruntime in about a second.

The cache is keyed by the CLIP settings and the weights files' size and mtime; the identity of the
model that wrote it (the index's vector slot) is stored with it.
"""

from __future__ import annotations

import copy
import hashlib
import html
import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixel_detective_dagster.models.onnx_sessions import cpu_session

FORMAT = 2  # 2: the text tower runs on the tokens through the end-of-text token where it can
PROBES = ("a photo of a cat", "Two dogs playing in the PARK!", "café, 42 naïve émojis 🐱", "it's a <b>test</b> &amp;")
# largest difference of a probe embedding component, ONNX (fp32) vs the loaded model: tight for an fp32 model,
# looser for one that runs in half precision (its own text vectors differ from fp32 by about that much)
MAX_ERROR = {"fp32": 2e-3}
MAX_ERROR_REDUCED = 2e-2
_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def tower_dir(
    models_dir: Path, model: str, pretrained: str | None, device: str, precision: str, kind: str = "text"
) -> Path:
    """Cache directory of the ``kind`` tower (``text`` or ``image``) for these CLIP settings; changed weights
    files get a new one."""
    stamp = [model, pretrained, device, precision, FORMAT]
    for name in (model, pretrained):
        path = Path(name).expanduser() if name else None
        if path is not None and path.exists():
            files = sorted(path.rglob("*")) if path.is_dir() else [path]
            stamp += [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    key = hashlib.sha256(json.dumps(stamp, default=str).encode()).hexdigest()[:16]
    return models_dir / f"{kind}_towers" / key


def through_end_of_text(tokens: Any) -> Any:
    """Token rows (numpy or torch) cut after the last row's end-of-text token, the largest id in each row."""
    return tokens[:, : int(tokens.argmax(1).max()) + 1]


@dataclass
class TextTower:
    """Query-time text encoder: tokenizer + ONNX session, no torch."""

    identity: str
    random_weights: bool
    context_length: int
    sot: int
    eot: int
    tokenizer: Any
    session: Any
    prefix: bool = False  # the export takes any prefix holding each row's end-of-text token (largest id)

    def tokens(self, texts: list[str]) -> np.ndarray:
        """The same ids as open_clip's ``SimpleTokenizer`` (ftfy + html clean-up, BPE, truncate, zero-pad)."""
        import ftfy  # lazy: open_clip's own text clean-up, kept exact

        rows = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for i, text in enumerate(texts):
            clean = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
            ids = [self.sot, *self.tokenizer.encode(clean).ids, self.eot][: self.context_length]
            ids[-1] = self.eot
            rows[i, : len(ids)] = ids
        return rows

    def model_input(self, texts: list[str]) -> np.ndarray:
        """The token ids the session runs on: cut after the last end-of-text token where the export allows."""
        tokens = self.tokens(texts)
        return through_end_of_text(tokens) if self.prefix else tokens

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 embeddings, as ``ClipEncoder.encode_texts``."""
        return self.session.run(None, {"tokens": self.model_input(texts)})[0].astype(np.float32)


def load_text_tower(directory: Path) -> TextTower | None:
    """The cached tower in ``directory``, or None when there is none (or it could not be verified)."""
    meta_file = directory / "tower.json"
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    if not meta.get("usable"):
        return None
    from tokenizers import Tokenizer  # lazy: only a cached tower needs it, not every app.search import

    session = cpu_session(directory / "text.onnx")
    return TextTower(
        meta["identity"],
        meta["random_weights"],
        meta["context_length"],
        meta["sot"],
        meta["eot"],
        Tokenizer.from_file(str(directory / "tokenizer.json")),
        session,
        bool(meta.get("prefix")),
    )


def export_text_tower(encoder: Any, directory: Path) -> TextTower | None:
    """Write ``encoder``'s text tower to ``directory`` (verified on ``PROBES``); None if this model cannot be.

    A model that cannot be exported (another tokenizer kind, an unexportable text model, a mismatch)
    gets a marker with the reason, so later searches load the full model without trying again.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=directory.parent))
    try:
        meta = _export(encoder, staging)
    except Exception as exc:  # noqa: BLE001 - any export failure only means "no fast path for this model"
        meta = {"usable": False, "reason": f"{type(exc).__name__}: {exc}"[:500]}
    meta.update(format=FORMAT, identity=encoder.identity)
    (staging / "tower.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return load_text_tower(directory)


def _export(encoder: Any, out: Path) -> dict[str, Any]:
    import torch  # lazy: only the export needs torch; text queries run without it

    from pixel_detective_dagster.models.text_prefix import (  # lazy: torch, as above
        PrefixTextEncoder,
        TextEncoder,
        causal_argmax_text,
    )

    tokenizer = encoder.tokenizer
    if not hasattr(tokenizer, "bpe_ranks") or getattr(tokenizer, "reduction_fn", None) is not None:
        raise TypeError(f"{type(tokenizer).__name__} is not open_clip's plain BPE tokenizer")
    _bpe_tokenizer(tokenizer).save(str(out / "tokenizer.json"))
    model = encoder.model
    if next(model.parameters()).dtype != torch.float32 or next(model.parameters()).device.type != "cpu":
        model = copy.deepcopy(model).float().cpu()

    prefix = causal_argmax_text(model)
    text = (PrefixTextEncoder(model) if prefix else TextEncoder(model)).eval()
    sample = tokenizer(list(PROBES))
    example = through_end_of_text(sample) if prefix else sample
    target = str(out / "text.onnx")
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on indexing; the probes below check the result
        if prefix:  # the tracing exporter fixes the attention's sequence length; torch.export keeps it symbolic
            positions = torch.export.Dim("positions", min=2, max=int(tokenizer.context_length))
            shapes = ({0: torch.export.Dim("batch"), 1: positions},)
            torch.onnx.export(
                text,
                (example,),
                target,
                input_names=["tokens"],
                dynamic_shapes=shapes,
                dynamo=True,
                verbose=False,
                optimize=False,  # ONNX Runtime optimizes the graph as it loads it; the exporter's pass cost 4 s more
            )
        else:
            torch.onnx.export(
                text,
                (example,),
                target,
                input_names=["tokens"],
                output_names=["embedding"],
                dynamic_axes={"tokens": {0: "batch"}, "embedding": {0: "batch"}},
                dynamo=False,
            )
    meta = {
        "usable": True,
        "random_weights": bool(encoder.random_weights),
        "context_length": int(tokenizer.context_length),
        "sot": int(tokenizer.sot_token_id),
        "eot": int(tokenizer.eot_token_id),
        "prefix": prefix,
    }
    (out / "tower.json").write_text(json.dumps({**meta, "identity": encoder.identity}))
    tower = load_text_tower(out)
    assert tower is not None
    if not np.array_equal(tower.tokens(list(PROBES)), sample.numpy()):
        raise ValueError("the exported tokenizer disagrees with open_clip's on the probe texts")
    error = float(np.abs(tower.encode_texts(list(PROBES)) - encoder.encode_texts(list(PROBES))).max())
    if error > MAX_ERROR.get(encoder.precision, MAX_ERROR_REDUCED):
        raise ValueError(f"ONNX text embeddings differ from the model's by {error:.2g}")
    return {**meta, "max_error": error}


def _bpe_tokenizer(tokenizer: Any) -> Any:
    """open_clip's ``SimpleTokenizer`` vocabulary and merges as a ``tokenizers`` BPE (lower-case, byte-level)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers  # lazy: only the export builds one

    merges = [pair for pair, _ in sorted(tokenizer.bpe_ranks.items(), key=lambda item: item[1])]
    bpe = Tokenizer(models.BPE(vocab=dict(tokenizer.encoder), merges=merges, end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    return bpe
