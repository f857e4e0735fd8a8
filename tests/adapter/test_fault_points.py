"""The named fault-injection points (care_verl/adapter/tools/faults.py) the reliability e2e tests use."""

import asyncio

import pytest

from care_verl.adapter.tools.faults import ENV, InjectedFault, injected, rgr_request_step, rollout_server_faults


def test_points_are_off_unless_named_and_can_be_limited_to_a_step(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert not injected("rgr_generate", 1)
    monkeypatch.setenv(ENV, "rgr_generate@1, rgr_hang")
    assert injected("rgr_generate", 1) and not injected("rgr_generate", 2) and not injected("rgr_generate")
    assert injected("rgr_hang") and injected("rgr_hang", 7)


def test_rgr_request_ids_carry_their_step():
    assert rgr_request_step("care_rgr_12_5") == 12
    assert rgr_request_step("a3f0-rollout") is None and rgr_request_step("care_rgr_x") is None


def test_rollout_server_faults_hit_only_rgr_requests_of_the_named_step(monkeypatch):
    monkeypatch.setenv(ENV, "rgr_generate@1,rgr_hang@2")
    asyncio.run(rollout_server_faults("ordinary-request"))  # sampling requests are never faulted
    with pytest.raises(InjectedFault, match="in the rollout server, request care_rgr_1_3"):
        asyncio.run(rollout_server_faults("care_rgr_1_3"))
    asyncio.run(rollout_server_faults("care_rgr_3_3"))

    async def hangs():
        await asyncio.wait_for(rollout_server_faults("care_rgr_2_0"), timeout=0.2)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(hangs())


def test_rgr_generate_timeout_must_be_positive_and_is_named():
    from care_verl.adapter.step.care_settings import care_settings_from_dict

    assert care_settings_from_dict({"rgr": {"generate_timeout_s": 5}}).rgr.generate_timeout_s == 5
    with pytest.raises(ValueError, match="care.rgr.generate_timeout_s must be > 0"):
        care_settings_from_dict({"rgr": {"generate_timeout_s": 0}})


@pytest.fixture(scope="module")
def server(tiny_text_path):
    from care_verl.adapter.rollout.hf_rollout import HFServer

    return HFServer(tiny_text_path, {"response_length": 4, "prompt_length": 16, "max_num_seqs": 8, "seed": 0})


def test_the_hf_rollout_server_raises_or_hangs_for_rgr_requests_only(server, monkeypatch):
    """Inside the real server (in-process here; through Ray in tests/e2e/test_faults.py): RGR requests
    of the named steps fail or never return, everything else is served."""
    from care_verl.adapter.tools.faults import REQUEST_ID_KWARG

    monkeypatch.setenv(ENV, "rgr_generate@1,rgr_hang@2")

    def generate(timeout, **kwargs):
        async def go():
            return await asyncio.wait_for(server.generate("uuid", [5, 6, 7], {"temperature": 1.0}, **kwargs), timeout)
        return asyncio.run(go())

    assert generate(60).token_ids  # a sampling request
    assert generate(60, **{REQUEST_ID_KWARG: "care_rgr_3_0"}).token_ids  # RGR at a step without a fault
    with pytest.raises(InjectedFault, match="in the rollout server, request care_rgr_1_4"):
        generate(60, **{REQUEST_ID_KWARG: "care_rgr_1_4"})
    with pytest.raises(asyncio.TimeoutError):
        generate(1.0, **{REQUEST_ID_KWARG: "care_rgr_2_0"})
    monkeypatch.delenv(ENV)
    assert generate(60, **{REQUEST_ID_KWARG: "care_rgr_1_4"}).token_ids  # off unless named
