"""The committed wire/generated/ must be exactly what the generator writes today."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from wire.codegen.__main__ import DEFAULT_SPEC_DIR, main
from wire.codegen.generator import SpecError, generate, read_spec_json

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = REPO_ROOT / "wire" / "generated"

needs_specs = pytest.mark.skipif(
    not (DEFAULT_SPEC_DIR / "messages").is_dir(), reason="../shared/kafka-protocol is absent"
)


@needs_specs
def test_generated_modules_are_up_to_date(tmp_path: Path) -> None:
    generate(DEFAULT_SPEC_DIR, tmp_path)
    fresh = sorted(p.name for p in tmp_path.glob("*.py"))
    committed = sorted(p.name for p in COMMITTED.glob("*.py"))
    assert fresh == committed, "run `python -m wire.codegen` and commit wire/generated/"
    _, mismatch, errors = filecmp.cmpfiles(tmp_path, COMMITTED, fresh, shallow=False)
    assert (mismatch, errors) == ([], []), "run `python -m wire.codegen` and commit wire/generated/"


@needs_specs
def test_command_line_writes_to_the_given_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "produce_request.py").is_file()
    assert "wrote" in capsys.readouterr().out


def test_missing_spec_folder_is_a_clear_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--spec-dir", str(tmp_path), "--out-dir", str(tmp_path / "out")]) == 2
    assert "no messages/ folder" in capsys.readouterr().err


def test_spec_comments_are_stripped_but_not_inside_strings(tmp_path: Path) -> None:
    path = tmp_path / "X.json"
    path.write_text('// header\n{ "name": "a//b", // trailing\n  "n": 1 }\n')
    assert read_spec_json(path) == {"name": "a//b", "n": 1}


def test_a_broken_spec_file_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "Broken.json"
    path.write_text("{ not json")
    with pytest.raises(SpecError, match="Broken.json"):
        read_spec_json(path)
