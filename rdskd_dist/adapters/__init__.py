"""Adapters that run the plain-PyTorch engine on outside systems (Ray Train, ...).

The engine never imports them. `ray_connect` and `scale` are light (no ray until a connection is
made, so a CLI checks its options fast); the `ray_train` package imports ray itself. `torch_backend` and
`tune_report` import ray but not torch (nor the rest of the package): a Train controller loads them.
"""
