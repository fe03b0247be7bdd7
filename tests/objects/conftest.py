"""Fixtures of the object-bank tests: tiny random-weight models saved to disk once per session,
a CLI runner over the object commands, and a helper that snapshots a bank's bytes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from smile_data.cli_options import make_app
from smile_data.objects.cli import register
from tests.conftest import session_folder

_HELPER = Path(__file__).with_name("objects_tiny_models.py")
_spec = importlib.util.spec_from_file_location("objects_tiny_models", _HELPER)
tiny_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_models)


tiny_sd = session_folder("tiny_sd", tiny_models.build_tiny_pipeline,
                         "Folder of a Stable-Diffusion-shaped pipeline with random weights (save_pretrained).")
tiny_clip = session_folder("tiny_clip", tiny_models.build_tiny_clip,
                           "Folder of a CLIPModel + CLIPProcessor with random weights.")
tiny_clipseg = session_folder("tiny_clipseg", tiny_models.build_tiny_clipseg,
                              "Folder of a CLIPSegForImageSegmentation + CLIPSegProcessor with random weights.")


@pytest.fixture(scope="session")
def objects_app() -> typer.Typer:
    """The object commands in an app made as smile-data's is (mistakes: `error: ...`, status 2)."""
    app = make_app("object commands")
    register(app)
    return app


@pytest.fixture(scope="session")
def invoke(objects_app):
    """Run an object command in-process; returns the click Result."""
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(objects_app, [str(a) for a in args], catch_exceptions=False)

    return run


def bank_snapshot(root: Path) -> dict[str, bytes]:
    """Bytes of the bank's outputs (objects, manifest, card), by path relative to the root."""
    files = sorted(root.glob("objects/*/*.png")) + [root / "objects.parquet", root / "bank.json"]
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.fixture(scope="session")
def snapshot():
    return bank_snapshot
