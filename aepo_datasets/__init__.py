"""AEPO as Hugging Face `datasets` transforms: N responses per prompt -> preference pairs with k annotations."""

__version__ = "0.1.0"
