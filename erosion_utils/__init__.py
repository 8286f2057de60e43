"""Utilities for reproducing *On consequences of finetuning on data with highly discriminative features*."""
import os as _os

__version__ = "0.1.0"

# OpenMP's default busy-waiting makes torch 8x slower on small shared-CPU machines (measured: ResNet-18 training
# at 44 img/s with it, 486 without). It only takes effect if set before torch is first imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
