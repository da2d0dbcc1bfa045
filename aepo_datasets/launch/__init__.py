"""The multi-process launcher (`accelerate launch aepo_datasets/run.py`): chunks, process checks, the select stage."""
