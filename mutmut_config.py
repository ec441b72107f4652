"""mutmut's hooks for `make mutation` (docs/testing.md); mutmut 2 imports this file by name.

MUTATION_SAMPLE=N tests one mutant in N, the same ones on every run (chosen by a hash of the
mutated line and the mutation's place on it); the others are reported as skipped.
"""

from __future__ import annotations

import os
import zlib
from typing import Any


def pre_mutation(context: Any) -> None:
    every = int(os.environ.get("MUTATION_SAMPLE", "1"))
    mutation = context.mutation_id
    if every > 1 and zlib.crc32(f"{mutation.line}\0{mutation.index}".encode()) % every:
        context.skip = True
