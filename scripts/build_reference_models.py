"""Build models of the default architectures with random weights (no downloads), for GPU checks.

- an all-MiniLM-L6-v2-shaped encoder (BERT: 6 layers, hidden 384, 12 heads), loadable by
  sentence-transformers (mean pooling) as `embedding_model`;
- a deberta-v3-large-shaped reward model (DeBERTa-v2: 24 layers, hidden 1024, 16 heads, relative
  attention, one output) loadable as `reward_model`.
Random weights cost the same as trained ones. Both use the tokenizer files in --tokenizer (the packaged
MiniLM WordPiece tokenizer), so the vocabulary differs from DeBERTa-v3's (30,522 vs 128,100 rows of the
embedding table): the compute per token is the architecture's.

    python scripts/build_reference_models.py --tokenizer TOKENIZER_DIR --out MODELS_DIR [--small]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def build(tokenizer_dir: str, out: Path, small: bool = False) -> dict[str, str]:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel, DebertaV2Config, DebertaV2ForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    vocab = dict(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id)
    encoder = BertModel(BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                   intermediate_size=1536, max_position_embeddings=512, **vocab))
    size = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024) if small else \
        dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    reward = DebertaV2ForSequenceClassification(DebertaV2Config(
        **size, max_position_embeddings=512, relative_attention=True, pos_att_type=["p2c", "c2p"],
        position_buckets=256, max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True,
        position_biased_input=False, type_vocab_size=0, num_labels=1, **vocab))
    paths = {"embedder": out / "minilm-l6-shaped", "reward": out / ("deberta-small" if small else "deberta-v3-large-shaped")}
    for model, path in ((encoder, paths["embedder"]), (reward, paths["reward"])):
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return {k: str(v) for k, v in paths.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="folder with tokenizer files (e.g. the packaged MiniLM)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--small", action="store_true", help="a 4-layer reward model instead of the large one")
    args = parser.parse_args()
    for name, path in build(args.tokenizer, args.out, args.small).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
