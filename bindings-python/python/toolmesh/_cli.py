"""The ``toolmesh`` console command of the wheel: runs the toolmesh CLI binary the release wheel
carries (``toolmesh/_bin/toolmesh``, put there by scripts/dist.sh), with the same arguments."""

import os
import sys
from pathlib import Path

BINARY = Path(__file__).resolve().parent / "_bin" / "toolmesh"


def main() -> None:
    if not BINARY.is_file():
        sys.exit(
            f"toolmesh: this build of the toolmesh package carries no CLI ({BINARY} is missing); "
            "the release wheel built by scripts/dist.sh has it, or build it from a checkout with "
            "`cargo build -p toolmesh-cli`"
        )
    os.execv(BINARY, [str(BINARY), *sys.argv[1:]])
