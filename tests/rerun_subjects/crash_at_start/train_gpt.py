"""A rerun subject (our own code) that fails before training: the rerun must say why (DYN900)."""

import os


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    vocab_size = int(os.environ.get("VOCAB_SIZE", "1024"))


if __name__ == "__main__":
    h = Hyperparameters()
    raise ValueError(f"missing hyperparameter MODEL_DEPTH for {h.data_path}")
