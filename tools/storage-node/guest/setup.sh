#!/bin/bash
# Runs inside the image's chroot at build time (build-image, step "configure"): everything the
# storage node needs besides its packages. Idempotent: it runs again on top of itself.
#   setup.sh KERNEL_VERSION
set -euo pipefail
kver=$1

echo storage-node >/etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tstorage-node\n' >/etc/hosts
printf '/dev/vda\t/\text4\trw,noatime\t0\t1\n' >/etc/fstab
# root has no password but is not locked: sshd (UsePAM no) refuses even keys for a locked account
usermod -p '*' root
mkdir -p /etc/target  # LIO's db_root
ln -snf ../proc/self/mounts /etc/mtab  # mkfs.ocfs2 reads it

# sshd: one host key (ed25519), kept across rebuilds of this step so known_hosts stays valid;
# root logs in with the per-run key only (node-init writes it from the kernel command line).
rm -f /etc/ssh/ssh_host_rsa_key* /etc/ssh/ssh_host_ecdsa_key* /etc/ssh/ssh_host_dsa_key*
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
cat >/etc/ssh/sshd_config.d/storage-node.conf <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
# one connection carries many concurrent commands (tests/functional/nodelib.py)
MaxSessions 128
MaxStartups 32:50:128
ClientAliveInterval 60
CONF

# ZFS: a bounded ARC in a 2 GiB guest.
echo "options zfs zfs_arc_max=536870912" >/etc/modprobe.d/zfs.conf
mkdir -p /etc/zfs

# iSCSI initiator name, made once.
if ! grep -q '^InitiatorName=' /etc/iscsi/initiatorname.iscsi 2>/dev/null; then
    echo "InitiatorName=$(iscsi-iname -p iqn.2004-10.org.debian:storage-node)" >/etc/iscsi/initiatorname.iscsi
fi

# Smaller image: kernel modules a headless VM never loads; apt lists and caches.
for d in drivers/gpu drivers/media drivers/net/wireless drivers/infiniband drivers/staging \
         drivers/bluetooth drivers/isdn drivers/iio sound net/bluetooth net/wireless net/mac80211; do
    rm -rf "/lib/modules/$kver/kernel/$d"
done
depmod -a "$kver"
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/*.log
mkdir -p /var/lib/apt/lists/partial
