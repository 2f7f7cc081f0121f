import pytest
import torch

from lit_superposition.errors import ConfigError
from lit_superposition.schedules import WarmupDecay


def _factors(**kwargs):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupDecay(optimizer, **kwargs)
    factors = []
    for _ in range(kwargs.get("total_steps") or 10):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return factors


def test_constant_linear_and_cosine_with_warmup():
    assert _factors(decay="constant", total_steps=10) == [1.0] * 10
    assert _factors(decay="constant", warmup_steps=4, total_steps=6)[:5] == [0.25, 0.5, 0.75, 1.0, 1.0]
    linear = _factors(decay="linear", total_steps=10)
    assert linear[0] == 1.0 and linear[5] == pytest.approx(0.5)
    cosine = _factors(decay="cosine", warmup_steps=2, total_steps=12, final_lr_ratio=0.1)
    assert cosine[1] == 1.0 and cosine[2] == 1.0 and cosine[7] == pytest.approx(0.55)


def test_bad_schedules_raise():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigError, match="must exceed warmup_steps"):
        WarmupDecay(optimizer, warmup_steps=10, total_steps=5)
    with pytest.raises(ConfigError, match="decay must be"):
        WarmupDecay(optimizer, decay="step")
