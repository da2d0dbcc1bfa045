"""Model plumbing: sentence embedders, tokenizing and batching, device and dtype choice, the fork hook."""
