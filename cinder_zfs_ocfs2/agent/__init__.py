"""The storage-node side: runs under the node's system python3 with the stdlib and pyzfs only.

`ops.NodeOperations` performs ZFS operations on the node (pyzfs where it works, the zfs/zpool
CLIs elsewhere); `server` serves them as JSON lines on stdin/stdout behind an SSH forced command.
The local transport runs the same NodeOperations in-process.
"""
