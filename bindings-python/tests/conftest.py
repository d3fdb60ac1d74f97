import sys
from pathlib import Path

# The process and certificate helpers are shared with the cross-process suite in tests/python.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "python"))

from meshkit import certs, mesh, registry, session_mesh  # noqa: E402,F401  (pytest fixtures)
