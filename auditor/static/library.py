"""What library calls do to the labels of their arguments (torch, numpy, the standard library).

Names are matched on the *resolved* dotted name (``torch.nn.functional.cross_entropy``, whatever
alias the script used) or, for methods on values, on the method name (``.gather``, ``.backward``).
Anything not listed propagates the labels of all its inputs (a conservative data dependence).
"""

from __future__ import annotations

import ast
import re

# --- name groups --------------------------------------------------------------------------------
READERS = {
    "fromfile",
    "memmap",
    "load",
    "from_file",
    "frombuffer",
    "read_bytes",
    "read_text",
    "open",
    "loadtxt",
    "genfromtxt",
    "read",
    "readinto",
    "open_memmap",
    "UntypedStorage.from_file",
}
CROSS_ENTROPY = {"cross_entropy", "nll_loss"}
SOFTMAX = {"softmax", "log_softmax"}
GATHER = {"gather", "take_along_axis", "take_along_dim"}
IDENTITY_METHODS = {
    "to",
    "float",
    "double",
    "long",
    "int",
    "half",
    "bfloat16",
    "cpu",
    "cuda",
    "numpy",
    "astype",
    "view",
    "reshape",
    "contiguous",
    "clone",
    "detach",
    "squeeze",
    "unsqueeze",
    "flatten",
    "type",
    "pin_memory",
    "view_as",
    "reshape_as",
    "ravel",
    "copy",
    "short",
    "bool",
    "tolist",
    "clamp_",
    "requires_grad_",
    "share_memory_",
    "t",
    "permute",
    "transpose",
    "expand",
    "expand_as",
    "repeat",
    "tile",
    "flip",
    "unfold",
    "narrow",
    "split",
    "chunk",
    "unbind",
    "tensor_split",
}
IDENTITY_FUNCS = {
    "from_numpy",
    "as_tensor",
    "tensor",
    "asarray",
    "array",
    "ascontiguousarray",
    "frombuffer",
    "stack",
    "cat",
    "concatenate",
    "hstack",
    "vstack",
    "concat",
    "atleast_1d",
    "squeeze",
    "reshape",
    "flatten",
    "ravel",
    "copy",
    "deepcopy",
}
REDUCTIONS = {"sum", "mean", "nansum", "nanmean", "prod"}
META = {
    "shape",
    "dtype",
    "device",
    "ndim",
    "is_cuda",
    "requires_grad",
    "nbytes",
    "itemsize",
    "layout",
    "grad_fn",
    "is_leaf",
    "names",
}
META_METHODS = {
    "size",
    "numel",
    "dim",
    "nelement",
    "element_size",
    "stride",
    "storage_offset",
    "get_device",
    "data_ptr",
    "is_contiguous",
    "__len__",
}
MINMAX = {"minimum", "maximum", "fmin", "fmax"}
TABLE_WRITE_METHODS = {
    "index_add_",
    "scatter_add_",
    "scatter_",
    "index_put_",
    "put_",
    "index_copy_",
    "scatter_reduce_",
    "index_fill_",
    "masked_scatter_",
}
MUTATORS = {
    "add_",
    "sub_",
    "mul_",
    "div_",
    "copy_",
    "append",
    "extend",
    "update",
    "insert",
    "addcmul_",
    "addcdiv_",
    "lerp_",
    "set_",
    "setdefault",
    "add",
    "__setitem__",
}
ACCUMULATORS = {"add_", "append", "extend", "sub_"}
ARTIFACT_FUNCS = {
    "torch.save",
    "pickle.dump",
    "pickle.dumps",
    "numpy.save",
    "numpy.savez",
    "numpy.savez_compressed",
    "lzma.compress",
    "zlib.compress",
    "bz2.compress",
    "brotli.compress",
    "gzip.compress",
    "zstd.compress",
    "zstandard.compress",
    "safetensors.torch.save_file",
    "safetensors.torch.save",
    "json.dump",
}
OPTIMIZER_PREFIX = "torch.optim."
WRAPPERS = {
    "torch.compile",
    "torch.nn.parallel.DistributedDataParallel",
    "torch.nn.DataParallel",
    "torch.nn.parallel.DataParallel",
    "functools.partial",
    "torch.jit.script",
    "torch.jit.trace",
    "torch.nn.parallel.distributed.DistributedDataParallel",
    "torch._dynamo.optimize",
    "torch.cuda.amp.autocast",
    "torch.utils.checkpoint.checkpoint",
}

# --- network -----------------------------------------------------------------------------------
NETWORK_FUNCS = (
    "urllib.request.urlopen",
    "urllib.request.urlretrieve",
    "urllib.request.Request",
    "urllib.urlopen",
    "urllib.request.build_opener",
    "urllib3.",
    "requests.",
    "httpx.",
    "aiohttp.",
    "huggingface_hub.",
    "socket.socket",
    "socket.create_connection",
    "socket.getaddrinfo",
    "http.client.HTTPConnection",
    "http.client.HTTPSConnection",
    "ftplib.",
    "torch.hub.load",
    "torch.hub.download_url_to_file",
    "torch.hub.load_state_dict_from_url",
    "torch.utils.model_zoo.load_url",
    "datasets.load_dataset",
    "wget.download",
    "gdown.",
    "boto3.",
    "paramiko.",
    "smtplib.",
    "webbrowser.open",
)
SHELL_FUNCS = {
    "subprocess.run",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
    "subprocess.Popen",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "os.system",
    "os.popen",
    "os.execv",
    "os.execvp",
    "os.spawnv",
    "os.spawnl",
    "pty.spawn",
}
NETWORK_COMMAND = re.compile(
    r"\b(curl|wget|aria2c|scp|rsync|ssh|sftp|ftp|nc|netcat|git\s+(clone|fetch|pull|ls-remote)|"
    r"pip3?\s+(install|download)|uv\s+pip|huggingface-cli|hf\s+download|gsutil|aws\s+s3)\b|https?://|ftp://",
    re.IGNORECASE,
)


_NET_EXACT = frozenset(n for n in NETWORK_FUNCS if not n.endswith("."))
_NET_PREFIX = tuple(n for n in NETWORK_FUNCS if n.endswith("."))


def is_network_name(dotted: str) -> bool:
    return dotted in _NET_EXACT or dotted.startswith(_NET_PREFIX)


def string_constants(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def last(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def kw(node: ast.Call, name: str) -> ast.expr | None:
    for k in node.keywords:
        if k.arg == name:
            return k.value
    return None


def kw_const(node: ast.Call, name: str):
    v = kw(node, name)
    if isinstance(v, ast.Constant):
        return v.value
    return None


def is_val_path(text: str) -> bool:
    low = text.lower()
    return "fineweb_val" in low or bool(
        re.search(r"(^|[/_*.-])val(idation)?[_*.-].*\.(bin|npy|pt|jsonl?)", low)
    )


def is_train_path(text: str) -> bool:
    low = text.lower()
    return "fineweb_train" in low or bool(re.search(r"(^|[/_*.-])train[_*.-].*\.(bin|npy)", low))
