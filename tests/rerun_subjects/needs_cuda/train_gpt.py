"""A rerun subject (our own code) that refuses to run without a GPU, like most records."""

import os

import torch


class Hyperparameters:
    vocab_size = int(os.environ.get("VOCAB_SIZE", "1024"))


if __name__ == "__main__":
    if not torch.cuda.is_available():
        raise RuntimeError("CUDA is required")
