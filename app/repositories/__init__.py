"""The storage ports (`base.py`) and their adapters, one file each. Nothing here reads
settings: the composition root (`app/container.py`) builds the adapters."""
