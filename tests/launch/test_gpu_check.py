"""``python -m care_verl.launch.gpu_check``: stage plan, runner, report and the checks of each stage.

The tiny run itself is not started here (a full verl run; the check's CPU mode was run by hand:
docs/launch.md); its checks are fed synthetic metrics, probe records and row dumps.
"""

from __future__ import annotations

import json
import math
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from care_verl.launch import gpu_check as gc


def test_plan_orders_stages_and_expands_tiny_per_strategy():
    assert gc.plan(["tiny", "env"], ["fsdp2", "fsdp"]) == ["env", "tiny-fsdp2", "tiny-fsdp"]
    assert gc.plan(list(gc.STAGES), ["fsdp2"]) == ["env", "core", "smoke_cfg", "tiny-fsdp2"]
    with pytest.raises(ValueError, match="unknown stage"):
        gc.plan(["gpu"], ["fsdp2"])
    with pytest.raises(ValueError, match="unknown strategy"):
        gc.plan(["tiny"], ["megatron"])


def test_result_and_summary_line():
    res = gc.result(gc.PASS, "fine", x=1)
    assert res == {"status": "PASS", "reason": "fine", "details": {"x": 1}}
    res["seconds"] = 1.25
    assert gc.summary_line("env", res) == "[PASS] env (1.2 s): fine"
    with pytest.raises(ValueError):
        gc.result("OK", "no such status")


def _script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "stage.py"
    path.write_text(body)
    return [sys.executable, str(path)]


def test_stage_process_result_timeout_and_crash(tmp_path):
    res_path = tmp_path / "r.json"
    ok = _script(tmp_path, f"import json; print('hello'); open({str(res_path)!r}, 'w').write(json.dumps("
                           "{'status': 'SKIP', 'reason': 'why', 'details': {}}))")
    res = gc.run_stage_process(ok, tmp_path / "ok.log", res_path, timeout=60)
    assert res["status"] == "SKIP" and res["reason"] == "why" and res["seconds"] > 0
    assert "hello" in (tmp_path / "ok.log").read_text()

    crash = _script(tmp_path, "print('last words'); raise SystemExit(3)")
    res = gc.run_stage_process(crash, tmp_path / "crash.log", res_path, timeout=60)
    assert res["status"] == "FAIL" and "status 3" in res["reason"]
    assert "last words" in res["details"]["log_tail"]

    # the stage and what it started are ended at the limit
    hang = _script(tmp_path, "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                             "'import time; time.sleep(60)']); print('started', flush=True); time.sleep(60)")
    res = gc.run_stage_process(hang, tmp_path / "hang.log", res_path, timeout=3)
    assert res["status"] == "FAIL" and "timed out after 3 s" in res["reason"] and res["seconds"] < 30


def test_core_comparison_runs_on_cpu():
    """The comparison itself (CPU against CPU here; the stage compares CUDA against CPU)."""
    out = gc.compare_core("cpu", "float64", groups=16)
    assert out["rows"] == 128
    assert out["role_mismatch"] == out["pick_mismatch"] == out["k_prime_mismatch"] == 0
    assert out["adv_max_abs_diff"] == 0.0 and out["token_adv_max_abs_diff"] == 0.0
    assert out["n_anchor"] > 0 and out["n_hard_negative"] > 0  # the random batch has mixed groups
    assert gc.time_core("cpu", groups=8, hidden=16, repeats=1) > 0


def test_core_stage_skips_without_cuda():
    res = gc.stage_core(Namespace(device="cpu"))
    assert res["status"] == gc.SKIP


def test_tiny_overrides_per_device():
    cuda = gc.tiny_overrides("cuda", "fsdp", "hf", "sdpa", 2, Path("/r"))
    assert {"runtime=gpu", "actor_rollout_ref.actor.strategy=fsdp", "actor_rollout_ref.ref.strategy=fsdp",
            "actor_rollout_ref.rollout.name=hf", "trainer.n_gpus_per_node=1", "care.rgr.mode=repair",
            "++actor_rollout_ref.model.override_config.attn_implementation=sdpa",
            "actor_rollout_ref.model.use_remove_padding=false", "run.dir=/r"} <= set(cuda)
    flash = gc.tiny_overrides("cuda", "fsdp2", "vllm", "flash_attention_2", 2, Path("/r"))
    assert "actor_rollout_ref.rollout.name=vllm" in flash and not any("attn_implementation" in a for a in flash)
    cpu = gc.tiny_overrides("cpu", "fsdp2", "hf", "sdpa", 3, Path("/r"))
    assert "runtime=cpu" in cpu and "trainer.total_training_steps=3" in cpu
    assert not any(a.startswith("trainer.n_gpus_per_node") for a in cpu)  # the cpu runtime's own settings
    assert f"reward.custom_reward_function.path={gc.REWARD_FILE}" in cpu and gc.REWARD_FILE.exists()


def test_tiny_overrides_compose_on_the_gpu_runtime(tmp_path):
    from care_verl.adapter.entry.main import compose_config

    c = compose_config(gc.tiny_overrides("cuda", "fsdp", "hf", "sdpa", 2, tmp_path))
    arr = c.actor_rollout_ref
    assert c.trainer.device == "cuda" and arr.rollout.name == "hf" and arr.actor.strategy == "fsdp"
    assert arr.ref.strategy == "fsdp" and arr.model.override_config.attn_implementation == "sdpa"
    assert arr.model.use_remove_padding is False and c.trainer.n_gpus_per_node == 1
    assert c.ray_kwargs.ray_init.num_gpus == 1


def test_tiny_env_adds_probe_once_and_this_checkout_first(tmp_path):
    env = gc.tiny_env(tmp_path, {"VERL_USE_EXTERNAL_MODULES": "other.mod," + gc.PROBE_MODULE, "PYTHONPATH": "/x"})
    assert env["VERL_USE_EXTERNAL_MODULES"].split(",") == ["other.mod", gc.PROBE_MODULE, gc.REGISTER_MODULE]
    assert env["PYTHONPATH"].split(":") == [str(gc.REPO_ROOT), "/x"]
    assert env["CARE_VERL_GPU_PROBE"] == str(tmp_path / "probe") and env["CARE_VERL_ROW_DUMP"] == str(tmp_path / "rows")


def _step(step: int, **over) -> dict:
    data = {"critic/advantages/mean": 0.1, "critic/advantages/max": 1.0, "critic/advantages/min": -1.0,
            "actor/pg_loss": 0.01, "actor/kl_loss": 0.001, "care/accuracy": 0.5, "care/n_anchor": 2,
            "care/n_hard_negative": 4, "training/rollout_actor_probs_pearson_corr": 0.9995,
            "training/rollout_probs_diff_max": 2e-4, "timing_s/step": 3.0, "rgr/generated": 2}
    data.update(over)
    return {"step": step, "data": data}


def test_metric_checks():
    problems, summary = gc.check_metrics([_step(1), _step(2, **{"rgr/generated": 0})], 2)
    assert problems == [] and summary["rgr_generated"] == 2 and len(summary["per_step"]) == 2
    problems, _ = gc.check_metrics([_step(1, **{"care/zeta": math.nan})], 2)
    assert any("steps [1]" in p for p in problems) and any("care/zeta" in p for p in problems)
    problems, _ = gc.check_metrics([_step(1, **{"training/rollout_actor_probs_pearson_corr": 0.3})], 1)
    assert any("correlation 0.3" in p for p in problems)
    problems, _ = gc.check_metrics([_step(1, **{"rgr/generated": 0})], 1)
    assert any("RGR generated no row" in p for p in problems)
    problems, _ = gc.check_metrics([{"step": 1, "data": {"actor/pg_loss": 0.0}}], 1)
    assert any("missing" in p for p in problems)


def _probe(role, kind, device):
    return {"role": role, "kind": kind, "hidden_device": device}


def test_probe_checks():
    good = [_probe("actor", "train", "cuda:0"), _probe("actor", "logprob+embeddings", "cuda:0"),
            _probe("reference", "logprob", "cuda:0")]
    problems, seen = gc.check_probe(good, "cuda")
    assert problems == [] and seen["actor:train"] == ["cuda:0"]
    problems, _ = gc.check_probe(good[:2] + [_probe("reference", "logprob", "cpu")], "cuda")
    assert problems == ["reference:logprob forward ran on ['cpu'], expected cuda"]
    problems, _ = gc.check_probe(good[1:], "cuda")
    assert problems == ["no actor:train forward recorded"]


def test_row_checks(tmp_path):
    assert gc.check_rows(tmp_path)[0] == ["no row dump written (CARE_VERL_ROW_DUMP)"]
    emb = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    torch.save({"reasoning_emb": list(emb), "advantages": [torch.tensor(0.5)] * 4}, tmp_path / "step1_post.pt")
    problems, info = gc.check_rows(tmp_path)
    assert problems == [] and info["rows_checked"] == 4 and abs(info["embedding_norm_min"] - 1) < 1e-5
    torch.save({"reasoning_emb": [emb[0] * 2], "advantages": [torch.tensor(0.5)]}, tmp_path / "step2_post.pt")
    assert "not unit-norm" in gc.check_rows(tmp_path)[0][0]
    torch.save({"reasoning_emb": [emb[0]], "advantages": [torch.tensor(math.nan)]}, tmp_path / "step2_post.pt")
    assert "not finite" in gc.check_rows(tmp_path)[0][0]


def test_last_error_line():
    log = ("\x1b[36m(HFServer pid=1)\x1b[0m FileNotFoundError: [Errno 2] No such file\n"
           "UserWarning: megatron engine is not available: ModuleNotFoundError('x')\n"
           "RuntimeError: Sync replay buffer selected terminal groups\n  File x\n")
    assert gc.last_error(log) == "RuntimeError: Sync replay buffer selected terminal groups"
    assert gc.last_error("all fine\n") == ""


def test_rollout_server_line():
    log = "(HFServer pid=1) care_verl: hf rollout server 0 on cuda:0 (CUDA_VISIBLE_DEVICES=3)\n"
    assert gc.rollout_server_devices(log) == ["cuda:0"]


def test_smoke_cfg_stage_composes_the_smoke_preset():
    """``python -m care_verl.main +recipe=qwen25vl_7b +preset=smoke --cfg job``, as the GPU runtime composes it."""
    res = gc.stage_smoke_cfg(Namespace(device="cpu", smoke_recipes=["qwen25vl_7b"], timeout_smoke_cfg=300))
    assert res["status"] == gc.PASS, res
    got = res["details"]["qwen25vl_7b"]
    assert got["rollout"] == "vllm" and got["total_training_steps"] == 2 and got["rgr_mode"] == "repair"


def test_main_writes_report_and_exit_status(tmp_path, capsys):
    assert gc.main(["--out", str(tmp_path), "--device", "cpu", "--stages", "env,core"]) == 0
    out = capsys.readouterr().out
    assert "[PASS] env" in out and "[SKIP] core" in out and "1 passed, 0 failed, 1 skipped" in out
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["device"] == "cpu" and report["summary"] == {"PASS": 1, "FAIL": 0, "SKIP": 1}
    env = report["stages"]["env"]["details"]
    assert env["versions"]["verl"] == "0.9.1" and "flash-attn" in env["versions"]
    assert gc.main(["--out", str(tmp_path), "--stages", "nope"]) == 2
    # a stage that fails makes the exit status 1
    assert gc.main(["--out", str(tmp_path), "--device", "cuda", "--stages", "env"]) == (0 if torch.cuda.is_available() else 1)
