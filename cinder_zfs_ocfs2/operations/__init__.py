"""Policy: the lifecycle of volumes, snapshots and clones on ZFS, in terms of plain ids.

Knows the storage model and the dependency rules (never destroy a dependent); knows nothing of
Cinder's objects or exceptions, which stay in driver.py.
"""
