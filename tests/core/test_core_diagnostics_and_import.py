import math
import os
import subprocess
import sys

import pytest
import torch

from care_verl.core import CareConfig, Role, care_advantages, care_diagnostics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _batch(groups):
    index, correct = [], []
    for gid, flags in enumerate(groups):
        index += [gid] * len(flags)
        correct += flags
    B = len(index)
    c = torch.tensor(correct, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    return dict(index=torch.tensor(index, dtype=torch.long), correct=c, reward=c.float(),
                think_len=torch.arange(B), answer_len=torch.ones(B, dtype=torch.long),
                embeddings=torch.randn(B, 4, generator=g), old_logprob_mean=-torch.rand(B, generator=g))


def test_diagnostics_values():
    # groups: K'=4 success, K'=2 success, all-correct, all-failed (rescue K'=2)
    b = _batch([[1, 0, 0, 0, 0, 0], [1, 0, 0], [1, 1], [0, 0, 0], [1, 1, 0, 0, 0]])
    b = {k: v[:-5] for k, v in b.items()}  # the 5th group only enters the second check below
    cfg = CareConfig()
    adv, sg = care_advantages(**b, config=cfg)
    d = care_diagnostics(adv, sg, b["index"], b["correct"], b["reward"], cfg.eps)
    assert all(k.startswith("care/") for k in d) and all(isinstance(v, float) for v in d.values())
    assert d["care/frac_groups_with_positive"] == 0.75
    assert d["care/frac_groups_all_failed"] == 0.25
    assert d["care/frac_groups_all_correct"] == 0.25
    assert d["care/mean_k_prime"] == 3.0 and d["care/mean_k_prime_rescue"] == 2.0
    assert d["care/zeta"] == pytest.approx(1.0, abs=1e-4)  # binary rewards
    assert d["care/var_adv_pos"] == pytest.approx(0.0, abs=1e-8)  # both anchors get sqrt(K) = 2
    assert d["care/var_ratio"] == 0.0  # documented: 0.0 when var_pos == 0
    neg = torch.tensor([-0.25] * 4 + [-0.5] * 2, dtype=torch.float64)
    assert d["care/var_adv_neg"] == pytest.approx(float(neg.var(unbiased=False)), abs=1e-6)
    mass_fail = float(adv[~b["correct"]].abs().sum())
    assert d["care/neg_abs_mass_share"] == pytest.approx(mass_fail / float(adv.abs().sum()))
    assert d["care/n_anchor"] == 2 and d["care/n_hard_negative"] == 6
    assert d["care/n_pseudo_anchor"] == 1 and d["care/n_pseudo_negative"] == 2
    assert d["care/n_outside"] == 1 + 2
    assert sum(d[f"care/n_{r.name.lower()}"] for r in Role) == len(adv)
    # Two positives and failures: a group with a positive, neither all failed nor all correct.
    b = _batch([[1, 1], [1, 1, 0, 0, 0]])
    adv, sg = care_advantages(**b, config=cfg)
    d = care_diagnostics(adv, sg, b["index"], b["correct"], b["reward"], cfg.eps)
    assert d["care/frac_groups_all_correct"] == 0.5 and d["care/frac_groups_with_positive"] == 1.0
    assert d["care/frac_groups_all_failed"] == 0.0 and d["care/mean_k_prime"] == 3.0


def test_var_ratio_with_nonbinary_rewards():
    b = _batch([[1, 0, 0], [1, 0, 0, 0, 0]])
    b["reward"] = torch.tensor([1.0, 0.0, 0.5, 0.9, 0.0, 0.1, 0.0, 0.2])
    cfg = CareConfig(equalize=False)
    adv, sg = care_advantages(**b, config=cfg)
    d = care_diagnostics(adv, sg, b["index"], b["correct"], b["reward"], cfg.eps)
    pos = adv[sg.role == Role.ANCHOR].double()
    negs = adv[(sg.role == Role.HARD_NEGATIVE)].double()
    want = float(negs.var(unbiased=False) / pos.var(unbiased=False))
    assert d["care/var_ratio"] == pytest.approx(want, rel=1e-5)
    assert d["care/zeta"] != pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("groups", [[], [[1, 1]], [[0]], [[0, 0]]])
def test_diagnostics_finite_on_empty_sets(groups):
    b = _batch(groups) if groups else {**_batch([]), "embeddings": torch.zeros(0, 4)}
    for rescue in ("off", "raw"):
        cfg = CareConfig(rescue=rescue)
        adv, sg = care_advantages(**b, config=cfg)
        d = care_diagnostics(adv, sg, b["index"], b["correct"], b["reward"], cfg.eps,
                             reflected=torch.zeros_like(b["correct"]))
        assert all(math.isfinite(v) for v in d.values()), d
        assert d["care/zeta"] == 0.0 and d["care/var_ratio"] == 0.0 and d["care/mean_k_prime"] == 0.0


def test_core_imports_without_verl():
    code = (
        "import care_verl.core, sys; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('verl', 'ray', 'transformers')]; "
        "assert not bad, bad; "
        "assert not any(m == 'verl' or m.startswith('verl.') for m in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_core_sources_import_only_torch_and_core():
    # Static check too: no module in care_verl/core imports anything outside stdlib/torch/core.
    import ast

    core_dir = os.path.join(REPO, "care_verl", "core")
    allowed = {"torch", "care_verl", "__future__", "dataclasses", "enum", "math", "collections", "typing"}
    for name in os.listdir(core_dir):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(core_dir, name)).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for m in mods:
                assert m.split(".")[0] in allowed, (name, m)
                if m.startswith("care_verl"):
                    assert m == "care_verl.core" or m.startswith("care_verl.core."), (name, m)
