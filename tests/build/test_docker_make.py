"""Static checks of the Dockerfile and Makefile (neither can be built/run here)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from glmtrt.build.profile import known_profiles, load_profile

ROOT = Path(__file__).parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_base_image_per_profile_matches_profile_data():
    args = dict(re.findall(r"^ARG (BASE_IMAGE_\w+)=(\S+)$", DOCKERFILE, re.M))
    for name in known_profiles():
        prof = load_profile(name)
        assert args[f"BASE_IMAGE_{name}"] == prof.toolchain.triton_container
        assert f"FROM ${{BASE_IMAGE_{name}}} AS base-{name}" in DOCKERFILE
        stage = DOCKERFILE.split(f"AS base-{name}", 1)[1].split("FROM", 1)[0]
        assert f"GLMTRT_TRTLLM_LINE={prof.toolchain.line}" in stage
    assert "FROM base-${GPU_PROFILE} AS final" in DOCKERFILE


def test_no_unpinned_images_or_installs():
    for image in re.findall(r"^ARG BASE_IMAGE_\w+=(\S+)$", DOCKERFILE, re.M):
        assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-trtllm-python-py3", image), image
        assert "latest" not in image
    for line in re.findall(r"pip install[^\n\\]*", DOCKERFILE):
        for arg in line.split("pip install", 1)[1].split():
            if arg.startswith("-") or arg in (".", "&&"):
                continue
            assert "==" in arg, f"unpinned install: {arg} in {line!r}"
    assert "apt-get" not in DOCKERFILE


def test_dockerignore_keeps_outputs_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", ".venv", "engines/", "convert/", "triton_models/", "build/"):
        assert path in ignored


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_and_dry_run_engine():
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for target in ("install", "test", "demo", "plan", "engine", "repo", "serve", "bench", "help"):
        assert re.search(rf"^  {target}\s", out, re.M), target
    dry = subprocess.run(["make", "-n", "engine", "MODEL=/m/chatglm3-6b", "PRECISION=int8-wo", "GPU=t4"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "plan /m/chatglm3-6b --gpu t4 --precision int8-wo" in dry
    if shutil.which("trtllm-build") is None:   # goes through the profile's container
        assert "docker run" in dry and "convert engine-local" in dry
    bad = subprocess.run(["make", "-s", "plan", "MODEL=/m", "PRECISION=int2"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown PRECISION=int2" in bad.stdout + bad.stderr
