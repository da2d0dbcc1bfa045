"""The default models and the dtype names, torch-free: the configuration and the parsers read them without
loading a model library (`aepo --help` and `import aepo_datasets.io.labels` stay fast)."""

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
# The paper's code truncates at the tokenizer's maximum (512); sentence-transformers' default for
# MiniLM is 256, which changes the selected subsets on long responses (see README, "Fidelity").
DEFAULT_MAX_SEQ_LENGTH = 512
DEFAULT_REWARD_MODEL = "OpenAssistant/reward-model-deberta-v3-large-v2"
DEFAULT_PRESCREEN_MODEL = "aepo-mini"
DTYPE_NAMES = ("float32", "bfloat16", "float16")  # `--dtype`, besides auto; devices.DTYPES maps them to torch
