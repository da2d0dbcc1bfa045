"""Publishing to the Hugging Face Hub: the push and the dataset card."""
