"""Where the hf rollout server puts its model: on the device of its replica's first FSDP worker.

On the ``cpu`` platform it stays on the CPU (also where GPUs exist); on CUDA it shares the worker's
GPU and sees only that one (``CUDA_VISIBLE_DEVICES`` from the worker, Ray told not to reset it).
The server itself is checked on this CPU-only machine: an explicit ``device`` wins, none = cpu here.
"""

import torch

from care_verl.adapter.rollout.hf_rollout import HFServer, server_placement

CONFIG = {"response_length": 4, "prompt_length": 16, "max_num_seqs": 8, "seed": 0}


def test_cpu_platform_keeps_the_server_on_cpu():
    assert server_placement("cpu", None) == ("cpu", {})
    assert server_placement("cpu", "0,1", 1) == ("cpu", {})  # runtime=cpu on a GPU machine


def test_cuda_worker_shares_its_gpu_with_the_server():
    assert server_placement("cuda", "3") == (
        "cuda:0", {"CUDA_VISIBLE_DEVICES": "3", "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"})
    # a worker that sees several GPUs (Ray told not to set its variable) uses the one at its index
    assert server_placement("cuda", "4, 5,6", 1)[1]["CUDA_VISIBLE_DEVICES"] == "5"
    assert server_placement("cuda", None, 2) == ("cuda:2", {})


def test_server_model_on_the_requested_device(tiny_text_path, capsys):
    server = HFServer(tiny_text_path, CONFIG, device="cpu")
    assert server.device == torch.device("cpu")
    assert {p.device.type for p in server.model.parameters()} == {"cpu"}
    assert "hf rollout server 0 on cpu" in capsys.readouterr().out


def test_server_default_device_is_cpu_without_cuda(tiny_text_path):
    if torch.cuda.is_available():
        return
    assert HFServer(tiny_text_path, CONFIG).device == torch.device("cpu")
