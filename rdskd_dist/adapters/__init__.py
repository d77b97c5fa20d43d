"""Adapters that run the plain-PyTorch engine on outside systems (Ray Train, ...).

Nothing here is imported by the engine; each adapter imports its system lazily.
"""
