"""A detection task hands Arrow's freed memory back to the C library's allocator."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = """
import pyarrow as pa
from patternflow.pipeline.orchestration import return_freed_memory

assert pa.default_memory_pool().backend_name != "system"  # Arrow's own allocator by default
return_freed_memory()
pool = pa.default_memory_pool()
before = pool.bytes_allocated()
column = pa.array(range(1_000_000), pa.int64())
assert pool.backend_name == "system" and pool.bytes_allocated() - before >= 8_000_000
print("ok")
"""


def test_a_detection_task_allocates_arrow_memory_through_the_system_allocator():
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
