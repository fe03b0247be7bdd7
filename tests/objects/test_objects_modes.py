"""The bank builder's dtype modes: each name gives its dtype; auto is half precision on GPUs."""

from __future__ import annotations

import pytest
import torch

from smile_data.objects.generate import resolve_dtype
from smile_data.objects.settings import DTYPES


@pytest.mark.parametrize("name, device, dtype", [
    ("auto", "cpu", torch.float32), ("auto", "cuda:1", torch.float16),
    ("float32", "cuda", torch.float32), ("float16", "cpu", torch.float16),
    ("bfloat16", "cpu", torch.bfloat16),
])
def test_each_dtype_mode(name, device, dtype):
    assert name in DTYPES
    assert resolve_dtype(name, device) == dtype
