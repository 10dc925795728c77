"""Hyperparameters: one class whose body reads the environment, as every record script does.

Env vars must therefore be set before the script starts (the rerun harness and `pgolf train`
pass them through the subprocess environment). In-process callers (tests, bench) can override
any attribute by its lower-case name: ``Hyperparameters(iterations=5, model_dim=64)``; the
derived attributes (paths, topology) are recomputed after the overrides.
"""

import copy
import os
import uuid


def _env_flag(name: str, default: str) -> bool:
    return bool(int(os.environ.get(name, default)))


class Hyperparameters:
    # Experiment / data. DATA_DIR uses the Family-B layout; DATA_PATH + TOKENIZER_PATH override it.
    data_dir = os.environ.get("DATA_DIR", "./data/")
    data_path = os.environ.get("DATA_PATH", "")
    tokenizer_path_override = os.environ.get("TOKENIZER_PATH", "")
    val_byte_sidecar = os.environ.get("VAL_BYTE_SIDECAR", "auto")  # auto | 1 | 0 (CaseOps byte sidecar)
    seed = int(os.environ.get("SEED", "1337"))
    run_id = os.environ.get("RUN_ID", str(uuid.uuid4()))
    device_kind = os.environ.get("DEVICE", "auto")  # auto | cuda | cpu
    compile_enabled = os.environ.get("COMPILE_ENABLED", "auto")  # auto = on when CUDA is used

    # Training length and batch
    iterations = int(os.environ.get("ITERATIONS", "20000"))
    warmdown_frac = float(os.environ.get("WARMDOWN_FRAC", "0.72"))
    warmup_steps = int(os.environ.get("WARMUP_STEPS", "20"))  # compile warm-up; state is restored after
    lr_warmup_steps = int(os.environ.get("LR_WARMUP_STEPS", "0"))
    train_batch_tokens = int(os.environ.get("TRAIN_BATCH_TOKENS", "786432"))
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", "2048"))
    train_log_every = int(os.environ.get("TRAIN_LOG_EVERY", "500"))
    max_wallclock_seconds = float(os.environ.get("MAX_WALLCLOCK_SECONDS", "600.0"))  # 0 disables the cap
    grad_accum_override = int(os.environ.get("GRAD_ACCUM_STEPS", "0"))  # 0 = 8 // WORLD_SIZE

    # Validation / evals
    val_batch_tokens = int(os.environ.get("VAL_BATCH_TOKENS", "524288"))
    val_loss_every = int(os.environ.get("VAL_LOSS_EVERY", "4000"))
    eval_seq_len = int(os.environ.get("EVAL_SEQ_LEN", "2048"))
    eval_stride = int(os.environ.get("EVAL_STRIDE", "64"))
    eval_batch_seqs = int(os.environ.get("EVAL_BATCH_SEQS", "32"))
    sliding_window_enabled = _env_flag("SLIDING_WINDOW_ENABLED", "1")

    # Model shape
    vocab_size = int(os.environ.get("VOCAB_SIZE", "8192"))
    num_layers = int(os.environ.get("NUM_LAYERS", "11"))
    model_dim = int(os.environ.get("MODEL_DIM", "512"))
    num_heads = int(os.environ.get("NUM_HEADS", "8"))
    num_kv_heads = int(os.environ.get("NUM_KV_HEADS", "4"))
    mlp_mult = float(os.environ.get("MLP_MULT", "4.0"))
    leaky_relu_slope = float(os.environ.get("LEAKY_RELU_SLOPE", "0.5"))
    tie_embeddings = _env_flag("TIE_EMBEDDINGS", "1")
    logit_softcap = float(os.environ.get("LOGIT_SOFTCAP", "30.0"))
    rope_base = float(os.environ.get("ROPE_BASE", "10000.0"))
    rope_dims = int(os.environ.get("ROPE_DIMS", "16"))
    rope_train_seq_len = int(os.environ.get("ROPE_TRAIN_SEQ_LEN", "2048"))
    ln_scale = _env_flag("LN_SCALE", "1")
    qk_gain_init = float(os.environ.get("QK_GAIN_INIT", "5.25"))
    xsa_last_n = int(os.environ.get("XSA_LAST_N", "11"))
    skip_gates_enabled = _env_flag("SKIP_GATES_ENABLED", "1")
    parallel_residual_start = int(os.environ.get("PARALLEL_RESIDUAL_START", "7"))  # -1 disables
    num_loops = int(os.environ.get("NUM_LOOPS", "2"))
    loop_start = int(os.environ.get("LOOP_START", "3"))
    loop_end = int(os.environ.get("LOOP_END", "5"))
    enable_looping_at = float(os.environ.get("ENABLE_LOOPING_AT", "0.35"))
    smear_gate_enabled = _env_flag("SMEAR_GATE_ENABLED", "1")
    smear_window = int(os.environ.get("SMEAR_WINDOW", "12"))
    bigram_hash_buckets = int(os.environ.get("BIGRAM_HASH_BUCKETS", "0"))  # 0 disables BigramHash
    bigram_hash_dim = int(os.environ.get("BIGRAM_HASH_DIM", "128"))
    bos_id = int(os.environ.get("BOS_ID", "1"))

    # Optimizer
    min_lr = float(os.environ.get("MIN_LR", "0.0"))
    embed_lr = float(os.environ.get("EMBED_LR", "0.6"))
    head_lr = float(os.environ.get("HEAD_LR", "0.008"))
    tied_embed_lr = float(os.environ.get("TIED_EMBED_LR", "0.03"))
    tied_embed_init_std = float(os.environ.get("TIED_EMBED_INIT_STD", "0.005"))
    matrix_lr = float(os.environ.get("MATRIX_LR", "0.022"))
    scalar_lr = float(os.environ.get("SCALAR_LR", "0.02"))
    muon_momentum = float(os.environ.get("MUON_MOMENTUM", "0.99"))
    muon_backend_steps = int(os.environ.get("MUON_BACKEND_STEPS", "5"))
    muon_momentum_warmup_start = float(os.environ.get("MUON_MOMENTUM_WARMUP_START", "0.92"))
    muon_momentum_warmup_steps = int(os.environ.get("MUON_MOMENTUM_WARMUP_STEPS", "1500"))
    muon_row_normalize = _env_flag("MUON_ROW_NORMALIZE", "1")
    beta1 = float(os.environ.get("BETA1", "0.9"))
    beta2 = float(os.environ.get("BETA2", "0.95"))
    adam_eps = float(os.environ.get("ADAM_EPS", "1e-08"))
    grad_clip_norm = float(os.environ.get("GRAD_CLIP_NORM", "0.3"))
    adam_wd = float(os.environ.get("ADAM_WD", "0.02"))
    muon_wd = float(os.environ.get("MUON_WD", "0.095"))
    embed_wd = float(os.environ.get("EMBED_WD", "0.085"))
    ema_decay = float(os.environ.get("EMA_DECAY", "0.9965"))

    # Quantization and artifact
    compressor = os.environ.get("COMPRESSOR", "brotli")  # brotli | lzma
    gptq_calibration_batches = int(os.environ.get("GPTQ_CALIBRATION_BATCHES", "64"))
    gptq_calibration_source = os.environ.get("GPTQ_CALIBRATION_SOURCE", "train")  # train | selfgen
    gptq_reserve_seconds = float(os.environ.get("GPTQ_RESERVE_SECONDS", "12.0"))
    gptq_block_size = int(os.environ.get("GPTQ_BLOCK_SIZE", "128"))
    matrix_bits = int(os.environ.get("MATRIX_BITS", "6"))
    embed_bits = int(os.environ.get("EMBED_BITS", "8"))
    matrix_clip_sigmas = float(os.environ.get("MATRIX_CLIP_SIGMAS", "12.85"))
    embed_clip_sigmas = float(os.environ.get("EMBED_CLIP_SIGMAS", "20.0"))
    quant_min_numel = int(os.environ.get("QUANT_MIN_NUMEL", "65536"))  # smaller tensors pass through as fp16

    # Score-first test-time training (only on already-scored validation tokens)
    ttt_enabled = _env_flag("TTT_ENABLED", "0")
    ttt_mode = os.environ.get("TTT_MODE", "chunked")  # chunked | doc | phased
    ttt_lr = float(os.environ.get("TTT_LR", "0.005"))
    ttt_epochs = int(os.environ.get("TTT_EPOCHS", "3"))
    ttt_momentum = float(os.environ.get("TTT_MOMENTUM", "0.9"))
    ttt_chunk_tokens = int(os.environ.get("TTT_CHUNK_TOKENS", "32768"))
    ttt_batch_seqs = int(os.environ.get("TTT_BATCH_SEQS", "32"))
    ttt_grad_clip = float(os.environ.get("TTT_GRAD_CLIP", "1.0"))
    ttt_freeze_blocks = int(os.environ.get("TTT_FREEZE_BLOCKS", "0"))
    ttt_lora_rank = int(os.environ.get("TTT_LORA_RANK", "8"))  # doc/phased modes; 0 = full-weight SGD
    ttt_lora_lr = float(os.environ.get("TTT_LORA_LR", "0.01"))
    ttt_chunk_size = int(os.environ.get("TTT_CHUNK_SIZE", "48"))  # doc/phased: tokens per score->step chunk
    phased_ttt_prefix_docs = int(os.environ.get("PHASED_TTT_PREFIX_DOCS", "2000"))
    phased_ttt_num_phases = int(os.environ.get("PHASED_TTT_NUM_PHASES", "3"))
    global_ttt_lr = float(os.environ.get("GLOBAL_TTT_LR", "0.001"))
    global_ttt_epochs = int(os.environ.get("GLOBAL_TTT_EPOCHS", "1"))
    global_ttt_momentum = float(os.environ.get("GLOBAL_TTT_MOMENTUM", "0.9"))

    # Normalized n-gram mixture (full-vocab distributions, counts updated after scoring)
    ngram_mix_enabled = _env_flag("NGRAM_MIX_ENABLED", "0")
    ngram_mix_buckets = int(os.environ.get("NGRAM_MIX_BUCKETS", "16384"))
    ngram_mix_max_weight = float(os.environ.get("NGRAM_MIX_MAX_WEIGHT", "0.3"))
    ngram_mix_confidence = float(os.environ.get("NGRAM_MIX_CONFIDENCE", "16.0"))

    # Distributed topology (set by torchrun)
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    # Output files (relative to the working directory, like the records)
    model_path = "final_model.pt"
    quantized_model_path = "final_model.int6.ptz"

    def __init__(self, **overrides):
        for key, value in overrides.items():
            if key.startswith("_") or not hasattr(type(self), key):
                raise AttributeError(f"unknown hyperparameter {key!r}")
            setattr(self, key, value)
        self._derive()

    def _derive(self) -> None:
        """Attributes computed from the others (kept out of the env-reading block above)."""
        self.is_main_process = self.rank == 0
        self.grad_accum_steps = self.grad_accum_override or max(1, 8 // max(self.world_size, 1))
        if self.data_path:
            self.datasets_dir = self.data_path
            self.tokenizer_path = self.tokenizer_path_override
        else:
            self.datasets_dir = os.path.join(self.data_dir, "datasets", f"fineweb10B_sp{self.vocab_size}")
            self.tokenizer_path = self.tokenizer_path_override or os.path.join(
                self.data_dir, "tokenizers", f"fineweb_{self.vocab_size}_bpe.model")
        self.train_files = os.path.join(self.datasets_dir, "fineweb_train_*.bin")
        self.val_files = os.path.join(self.datasets_dir, "fineweb_val_*.bin")
        self.val_bytes_files = os.path.join(self.datasets_dir, "fineweb_val_bytes_*.bin")
        self.logfile = f"logs/{self.run_id}.txt"

    def replace(self, **overrides) -> "Hyperparameters":
        """A copy with some attributes changed (by lower-case name) and the derived ones recomputed."""
        clone = copy.copy(self)
        for key, value in overrides.items():
            if key.startswith("_") or not hasattr(type(self), key):
                raise AttributeError(f"unknown hyperparameter {key!r}")
            setattr(clone, key, value)
        clone._derive()
        return clone

    def as_dict(self) -> dict:
        """Every public non-callable attribute, class defaults overlaid by instance values."""
        keys = {k for k in dir(self) if not k.startswith("_")}
        return {k: getattr(self, k) for k in sorted(keys) if not callable(getattr(self, k))}

    def validate(self) -> None:
        """Fail early, with a readable message, on combinations the code cannot run."""
        problems = []
        if self.model_dim % self.num_heads:
            problems.append("MODEL_DIM must be divisible by NUM_HEADS")
        elif (self.model_dim // self.num_heads) % 2 or self.rope_dims % 2:
            problems.append("head dim and ROPE_DIMS must be even")
        elif self.rope_dims > self.model_dim // self.num_heads:
            problems.append("ROPE_DIMS cannot exceed the head dim")
        if self.num_heads % self.num_kv_heads:
            problems.append("NUM_HEADS must be divisible by NUM_KV_HEADS")
        if self.num_loops > 0 and not 0 <= self.loop_start <= self.loop_end < self.num_layers:
            problems.append("need 0 <= LOOP_START <= LOOP_END < NUM_LAYERS when NUM_LOOPS > 0")
        if self.eval_stride <= 0 or self.eval_stride > self.eval_seq_len:
            problems.append("need 0 < EVAL_STRIDE <= EVAL_SEQ_LEN")
        if self.ttt_chunk_tokens % self.eval_stride:
            problems.append("TTT_CHUNK_TOKENS must be a multiple of EVAL_STRIDE (chunks hold whole strides)")
        if self.ttt_mode not in ("chunked", "doc", "phased"):
            problems.append(f"TTT_MODE must be chunked, doc or phased, got {self.ttt_mode!r}")
        if self.compressor not in ("brotli", "lzma"):
            problems.append(f"COMPRESSOR must be brotli or lzma, got {self.compressor!r}")
        if self.gptq_calibration_source not in ("train", "selfgen"):
            problems.append("GPTQ_CALIBRATION_SOURCE must be train or selfgen")
        if self.val_byte_sidecar not in ("auto", "0", "1"):
            problems.append("VAL_BYTE_SIDECAR must be auto, 0 or 1")
        local_tokens = self.train_batch_tokens // (self.world_size * self.grad_accum_steps)
        if local_tokens < self.train_seq_len:
            problems.append("TRAIN_BATCH_TOKENS too small for one sequence per rank and micro-step")
        if self.data_path and not self.tokenizer_path:
            problems.append("DATA_PATH needs TOKENIZER_PATH")
        if problems:
            raise ValueError("invalid hyperparameters: " + "; ".join(problems))
