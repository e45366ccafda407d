"""The planner counts the prompt-embedding table of a multimodal engine (AutoGLM-Phone-9B sizes)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from glmtrt.build.planner import ModelDims, Workload, plan_memory, prompt_table_bytes, prompt_table_rows
from glmtrt.build.profile import load_profile
from glmtrt.cli import main

DIMS = ModelDims("glm4v-9b", 40, 4096, 32, 2, 128, 13696, 151552, 65536)


def test_rows_follow_the_per_request_limit():
    # PromptTuningBuffers: a request may use table / max_batch_size rows -> size for a full batch
    assert prompt_table_rows(8, 1, 3188) == 25504
    assert prompt_table_rows(4, 2, 100) == 800


def test_table_bytes_reduce_the_kv_budget():
    wl = Workload(max_batch_size=8, max_seq_len=8192, max_prompt_embedding_table_size=25504)
    assert prompt_table_bytes(DIMS, wl.resolved(), "int8-wo") == 2 * 25504 * 4096 * 2     # shared + in-flight, fp16
    p = plan_memory(DIMS, load_profile("rtx4090"), "int8-wo", 2, wl)
    q = plan_memory(DIMS, load_profile("rtx4090"), "int8-wo", 2, Workload(max_batch_size=8, max_seq_len=8192))
    assert p.prompt_table_bytes == 2 * 25504 * 4096 * 2 and q.prompt_table_bytes == 0
    assert q.kv_budget_bytes - p.kv_budget_bytes == pytest.approx(0.9 * p.prompt_table_bytes, abs=2)


@pytest.fixture(scope="module")
def autoglm_config_dir(tmp_path_factory):
    from tests.autoglm.conftest import write_autoglm_config

    return write_autoglm_config(tmp_path_factory.mktemp("autoglm-plan"))


def test_plan_cli_autoglm_counts_vision_and_table(autoglm_config_dir):
    r = CliRunner().invoke(main, ["plan", str(autoglm_config_dir), "--gpu", "rtx4090", "--max-seq-len", "8192",
                                  "--precision", "int8-wo", "--tp", "2", "--max-images", "2", "--json"])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output[r.output.index("{"):])
    assert plan["workload"]["max_prompt_embedding_table_size"] == 8 * 2 * 3188   # 5,000,000 px -> 3188 tokens
    assert plan["prompt_table_bytes"] == 2 * 51008 * 4096 * 2 and plan["extra_weight_bytes"] > 1.0e9
    r = CliRunner().invoke(main, ["plan", str(autoglm_config_dir), "--gpu", "rtx4090", "--max-seq-len", "8192",
                                  "--precision", "int8-wo", "--tp", "2", "--max-multimodal-len", "3188"])
    assert r.exit_code == 0 and "warning: --max-multimodal-len 3188 gives each request 398 prompt-table rows" in r.output
    r = CliRunner().invoke(main, ["plan", str(autoglm_config_dir), "--gpu", "rtx4090", "--max-seq-len", "8192"])
    assert r.exit_code == 2 and "prompt table" in r.output and "--tp 2" in r.output and "int8-wo" in r.output
