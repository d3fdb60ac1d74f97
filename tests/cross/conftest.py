"""The fixture of the cross-language suite: one mesh of eight peers for the whole session."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from crossmesh import CrossMesh


@pytest.fixture(scope="session")
def cross(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrossMesh]:
    mesh = CrossMesh(Path(tmp_path_factory.mktemp("cross")))
    try:
        mesh.start()
        yield mesh
    finally:
        mesh.close()
