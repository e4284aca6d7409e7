"""The sha256 record of a version's model files, and its check (scoring/integrity.py), without MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from housing_platform.scoring.integrity import (
    FILES_SHA256_TAG,
    ArtifactIntegrityError,
    file_hashes,
    manifest_tag,
    sha256_of,
    verify_model_files,
)


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "artifacts" / "network.keras").write_bytes(b"\x00weights\x01")
    (tmp_path / "artifacts" / "transformer.skops").write_bytes(b"transformer")
    return tmp_path


def test_an_untouched_folder_passes_and_every_file_is_checked(model_folder: Path) -> None:
    tags = {FILES_SHA256_TAG: manifest_tag(model_folder)}
    (model_folder / "registered_model_meta").write_text("model_name: m\n")  # MLflow's download marker
    assert verify_model_files(model_folder, tags, "models:/m/1") == 3


@pytest.mark.parametrize("change", ["rewrite", "delete", "add"])
def test_a_changed_missing_or_added_file_is_refused_naming_it(model_folder: Path, change: str) -> None:
    tags = {FILES_SHA256_TAG: manifest_tag(model_folder)}
    network = model_folder / "artifacts" / "network.keras"
    recorded = sha256_of(network)
    if change == "rewrite":
        network.write_bytes(b"\x00weights\x02")  # one byte: the output bias of the issue, in miniature
    elif change == "delete":
        network.unlink()
    else:
        (model_folder / "artifacts" / "extra.py").write_text("import os\n")
    with pytest.raises(ArtifactIntegrityError) as refused:
        verify_model_files(model_folder, tags, "models:/m/1")
    message = str(refused.value)
    assert message.startswith("models:/m/1: ")
    if change == "rewrite":
        assert f"artifacts/network.keras: sha256 {recorded} recorded, {sha256_of(network)} found" in message
    elif change == "delete":
        assert "artifacts/network.keras: " in message and "the file is missing" in message
    else:
        assert "artifacts/extra.py: not recorded at registration" in message


def test_a_version_from_before_the_manifest_is_checked_against_the_hashes_it_recorded(model_folder: Path) -> None:
    network = model_folder / "artifacts" / "network.keras"
    assert verify_model_files(model_folder, {"model_sha256": sha256_of(network)}, "models:/m/1") == 1
    with pytest.raises(ArtifactIntegrityError, match="network.keras: sha256 0+ recorded"):
        verify_model_files(model_folder, {"model_sha256": "0" * 64}, "models:/m/1")


def test_a_version_recording_no_hash_is_refused_as_unverifiable(model_folder: Path) -> None:
    with pytest.raises(ArtifactIntegrityError, match="records no file hashes"):
        verify_model_files(model_folder, {"purpose": "x"}, "models:/m/1")
    assert set(file_hashes(model_folder)) == {"MLmodel", "artifacts/network.keras", "artifacts/transformer.skops"}
