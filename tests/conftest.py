"""Settings every test runs under: no torch.compile warm-up, no hub or price-list downloads."""

from __future__ import annotations

import os

# Set before any test imports moshi, huggingface_hub or litellm.
os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OMP_NUM_THREADS", "1")
