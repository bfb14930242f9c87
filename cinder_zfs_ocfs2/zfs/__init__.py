"""ZFS mechanism: a typed client, its errors and dataset names. Knows ZFS, nothing of Cinder.

errors.py and names.py use only the standard library: the storage-node agent imports them too.
"""
