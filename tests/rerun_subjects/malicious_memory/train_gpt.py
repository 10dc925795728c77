"""MALICIOUS rerun subject (our own code, for tests/test_rerun_sandbox.py): allocates and touches
memory without bound. The sandbox must stop it (memory cgroup or RLIMIT_AS), not the host."""

import numpy as np

hoard = []
while True:
    block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, written so the pages are really used
    hoard.append(block)
    print(f"holding {len(hoard) * 64} MiB", flush=True)
