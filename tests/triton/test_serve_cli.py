"""`glmtrt serve` without starting a server: the GPU repository path and library helpers."""
from __future__ import annotations

import json

from click.testing import CliRunner

from glmtrt.cli import main
from glmtrt.triton.launch import gpu_command
from glmtrt.triton.server import repository_backend, server_env


def _gpu_repo(tmp_path, world_size):
    (tmp_path / "tensorrt_llm").mkdir()
    (tmp_path / "tensorrt_llm" / "config.pbtxt").write_text('name: "tensorrt_llm"\nbackend: "tensorrtllm"\n')
    (tmp_path / "glmtrt_repo.json").write_text(json.dumps({
        "trtllm_contract": "1.2",
        "engine": {"kind": "gpu", "dir": "/data/engines/glm4", "path_in_server": "/engines/glm4",
                   "world_size": world_size}}))
    return tmp_path


def test_gpu_repository_prints_container_command(tmp_path):
    repo = _gpu_repo(tmp_path, 2)
    assert repository_backend(repo) == "tensorrtllm"
    cmd = gpu_command(repo)
    assert cmd[:3] == ["docker", "run", "--rm"] and "/data/engines/glm4:/engines/glm4:ro" in cmd
    assert "mpirun" in cmd and cmd.count("-n") == 2  # one tritonserver per rank
    res = CliRunner().invoke(main, ["serve", str(repo)])
    assert res.exit_code == 0 and "docker run" in res.output and "mpirun" in res.output


def test_server_env_puts_this_venv_first():
    import os
    import sys

    env = server_env({"PATH": "/usr/bin"})
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert "nvidia_pytriton.libs" in env["LD_LIBRARY_PATH"]


def test_gpu_container_is_the_glmtrt_image_of_the_profile(tmp_path):
    # the python models import glmtrt: the bare NGC image lacks it, so the default is the image
    # `make image GPU=<profile>` builds (Makefile IMAGE ?= glmtrt:$(GPU), Dockerfile FROM the profile's
    # tritonserver:*-trtllm-python-py3)
    repo = _gpu_repo(tmp_path, 1)
    man = json.loads((repo / "glmtrt_repo.json").read_text())
    man["engine"]["profile"] = "t4"
    (repo / "glmtrt_repo.json").write_text(json.dumps(man))
    cmd = gpu_command(repo)
    assert "glmtrt:t4" in cmd and "mpirun" not in cmd and "--shm-size" in cmd
    assert "my/img:1" in gpu_command(repo, image="my/img:1")
    res = CliRunner().invoke(main, ["serve", str(repo), "--image", "my/img:1"])
    assert res.exit_code == 0 and "my/img:1" in res.output
