#!/bin/bash
#
# devstack/plugin.sh: DevStack plugin for cinder-zfs-ocfs2, the Cinder volume driver for OpenZFS.
#
#   [[local|localrc]]
#   enable_plugin cinder-zfs-ocfs2 https://<this repository>
#
# The backend is DevStack's "zfs:<name>" entry of CINDER_ENABLED_BACKENDS (override-defaults
# adds zfs:zfs), so lib/cinder lists it in enabled_backends, makes it the default volume type
# when it comes first, and calls the backend hooks defined here:
#
#   init_cinder_backend_zfs    - from init_cinder: the pool (file-backed unless named) and the
#                                root dataset
#   cleanup_cinder_backend_zfs - from cleanup_cinder (unstack.sh, clean.sh, after cinder has
#                                stopped): destroys the root dataset
#
# and the plugin phases do the rest:
#
#   stack install      OpenZFS, ocfs2-tools, the target helper; this package into Cinder's
#                      environment; the agent for the node (ssh mode, node on this host)
#   stack post-config  cinder-rootwrap filters (local mode), the agent's key (ssh mode), the
#                      backend section of cinder.conf from cinder-zfs-backend-conf
#   stack extra        volume types: <name> (made by DevStack) and the OCFS2 type
#   stack test-config  Tempest's volume feature flags for what the driver supports
#   clean              the file-backed pool and its file, the filters, the agent, the key
#
# Settings: devstack/settings (documented in devstack/README.md).
# shellcheck shell=bash

# Save trace setting
_XTRACE_CINDER_ZFS=$(set +o | grep xtrace)
set +o xtrace

CINDER_ZFS_KEY_COMMENT=cinder-zfs-ocfs2-devstack

# Helpers
# -------

# _cinder_zfs_backend_name - the name of the (one) zfs:<name> backend of CINDER_ENABLED_BACKENDS
function _cinder_zfs_backend_name {
    local be names=()
    for be in ${CINDER_ENABLED_BACKENDS//,/ }; do
        if [[ "${be%%:*}" == "zfs" ]]; then
            names+=("${be##*:}")
        fi
    done
    if [[ ${#names[@]} -ne 1 ]]; then
        die $LINENO "CINDER_ENABLED_BACKENDS must name exactly one zfs:<name> backend" \
            "(found ${#names[@]}: ${names[*]})"
    fi
    echo "${names[0]}"
}

# _cinder_zfs_pool - the pool the backend uses
function _cinder_zfs_pool {
    echo "${CINDER_ZFS_POOL:-$CINDER_ZFS_BACKING_POOL}"
}

# _cinder_zfs_node_is_local - is ZFS on this host (local mode, or ssh to this host)?
function _cinder_zfs_node_is_local {
    [[ "$CINDER_ZFS_AGENT_MODE" == "local" ]] && return 0
    case "$CINDER_ZFS_SSH_HOST" in
        127.*|localhost|::1|"${HOST_IP:-}"|"${HOST_IPV6:-}"|"${SERVICE_HOST:-}"|"$(hostname)")
            return 0 ;;
    esac
    return 1
}

# _cinder_zfs_agent_on_this_host - does the plugin install and authorize the agent here?
function _cinder_zfs_agent_on_this_host {
    [[ "$CINDER_ZFS_AGENT_MODE" == "ssh" ]] && _cinder_zfs_node_is_local
}

# _cinder_zfs_target_ip - the iSCSI portal address written as target_ip_address
function _cinder_zfs_target_ip {
    if [[ -n "$CINDER_ZFS_TARGET_IP" ]]; then
        echo "$CINDER_ZFS_TARGET_IP"
    elif _cinder_zfs_node_is_local; then
        echo "${CINDER_MY_IP:-$HOST_IP}"
    else
        echo "$CINDER_ZFS_SSH_HOST"
    fi
}

# _cinder_zfs_user_home <user> - home directory of a user of this host
function _cinder_zfs_user_home {
    getent passwd "$1" | cut -d: -f6
}

# _cinder_zfs_backend_conf <be_name> - the backend section as key=value lines, from the package's
# cinder-zfs-backend-conf (the one source of truth for it, shared with tools/stack)
function _cinder_zfs_backend_conf {
    local be_name=$1
    local opt
    local -a args=(
        --backend-name "$be_name"
        --root-dataset "$CINDER_ZFS_ROOT_DATASET"
        --agent-mode "$CINDER_ZFS_AGENT_MODE"
        --target-helper "$CINDER_ZFS_TARGET_HELPER"
        --target-protocol iscsi
        --target-ip-address "$(_cinder_zfs_target_ip)"
        --target-port "${CINDER_TARGET_PORT:-3260}"
        --catalog-connection "$CINDER_ZFS_CATALOG_CONNECTION"
    )
    if [[ "$CINDER_ZFS_AGENT_MODE" == "ssh" ]]; then
        args+=(
            --ssh-host "$CINDER_ZFS_SSH_HOST"
            --ssh-port "$CINDER_ZFS_SSH_PORT"
            --ssh-user "$CINDER_ZFS_SSH_USER"
            --ssh-key "$CINDER_ZFS_SSH_KEY"
            --ssh-known-hosts "$CINDER_ZFS_SSH_KNOWN_HOSTS"
        )
    fi
    for opt in $CINDER_ZFS_EXTRA_OPTS; do
        args+=(--set "$opt")
    done
    "$CINDER_BIN_DIR/cinder-zfs-backend-conf" "${args[@]}"
}

# _cinder_zfs_volume_type <name> <description> <key=value>... - create or update a volume type
function _cinder_zfs_volume_type {
    local name=$1
    local description=$2
    shift 2
    local spec
    local -a props=()
    for spec in "$@"; do
        props+=(--property "$spec")
    done
    if ! openstack --os-region-name="$REGION_NAME" volume type show "$name" >/dev/null 2>&1; then
        openstack --os-region-name="$REGION_NAME" volume type create \
            --description "$description" "$name"
    fi
    openstack --os-region-name="$REGION_NAME" volume type set "${props[@]}" "$name"
}

# Install
# -------

# install_cinder_zfs_packages - OpenZFS, OCFS2 tools and the target helper's tools
function install_cinder_zfs_packages {
    local -a packages=(ocfs2-tools)
    if [[ "$CINDER_ZFS_TARGET_HELPER" == "tgtadm" ]]; then
        packages+=(tgt)
    else
        packages+=(targetcli-fb python3-rtslib-fb)
    fi
    if _cinder_zfs_agent_on_this_host; then
        packages+=(openssh-server)
    fi
    if [[ "$CINDER_ZFS_INSTALL_ZFS" == "True" ]]; then
        if ! is_ubuntu; then
            die $LINENO "The plugin installs OpenZFS on Debian and Ubuntu only: install it" \
                "(zfs, python3-pyzfs) yourself and set CINDER_ZFS_INSTALL_ZFS=False"
        fi
        if [[ "${os_VENDOR:-}" == "Debian" ]]; then
            # OpenZFS is in contrib (its kernel module is built by DKMS).
            if ! apt-cache show zfsutils-linux >/dev/null 2>&1; then
                echo "deb $CINDER_ZFS_DEBIAN_MIRROR ${os_CODENAME:?} contrib" | \
                    sudo tee /etc/apt/sources.list.d/cinder-zfs-contrib.list >/dev/null
                # shellcheck disable=SC2034  # makes DevStack's install_package run apt-get update
                REPOS_UPDATED=False
            fi
            packages+=("linux-headers-$(uname -r)" zfs-dkms)
        fi
        packages+=(zfsutils-linux python3-pyzfs)
    fi
    install_package "${packages[@]}"
    if _cinder_zfs_node_is_local; then
        sudo modprobe zfs
    fi
}

# install_cinder_zfs_ocfs2 - this package into Cinder's Python environment
function install_cinder_zfs_ocfs2 {
    # DevStack's venv conventions: the global venv (GLOBAL_VENV) is pip_install's default;
    # with USE_VENV every project has its own, and the driver must go into Cinder's.
    local PIP_VIRTUAL_ENV=${PIP_VIRTUAL_ENV:-}
    if [[ "${USE_VENV:-False}" == "True" ]]; then
        PIP_VIRTUAL_ENV=${PROJECT_VENV["cinder"]}
    fi
    setup_develop "$CINDER_ZFS_OCFS2_DIR"
}

# install_cinder_zfs_agent - a root-owned copy of the package for the agent's forced command
# (the agent runs under the system python3 with python3-pyzfs, needs nothing from Cinder)
function install_cinder_zfs_agent {
    sudo rm -rf "$CINDER_ZFS_AGENT_DIR"
    sudo install -d -o root -g root -m 755 "$CINDER_ZFS_AGENT_DIR"
    sudo cp -r "$CINDER_ZFS_OCFS2_DIR/cinder_zfs_ocfs2" "$CINDER_ZFS_AGENT_DIR/"
    sudo chown -R root:root "$CINDER_ZFS_AGENT_DIR"
}

# Pool
# ----

# init_cinder_backend_zfs <be_name> - the pool and the root dataset (called by init_cinder)
function init_cinder_backend_zfs {
    local be_name=$1
    if ! _cinder_zfs_node_is_local; then
        echo "Storage node $CINDER_ZFS_SSH_HOST is remote: pool and agent are prepared there"
        return
    fi
    local pool
    pool=$(_cinder_zfs_pool)
    if [[ -n "$CINDER_ZFS_POOL" ]]; then
        if ! sudo zpool list -H -o name "$pool" >/dev/null 2>&1; then
            die $LINENO "CINDER_ZFS_POOL=$pool is not an imported pool (zpool list)"
        fi
    elif ! sudo zpool list -H -o name "$pool" >/dev/null 2>&1; then
        # The pool of an earlier stack.sh (not imported after a reboot) is imported again;
        # otherwise a sparse file becomes a new pool.
        if [[ -f "$CINDER_ZFS_BACKING_FILE" ]] && \
                sudo zpool import -d "$CINDER_ZFS_BACKING_FILE" "$pool" >/dev/null 2>&1; then
            echo "Imported pool $pool from $CINDER_ZFS_BACKING_FILE"
        else
            truncate -s "$CINDER_ZFS_BACKING_FILE_SIZE" "$CINDER_ZFS_BACKING_FILE"
            sudo zpool create -f -m none -o ashift=12 "$pool" "$CINDER_ZFS_BACKING_FILE"
        fi
    fi
    if ! sudo zfs list -H -o name "$CINDER_ZFS_ROOT_DATASET" >/dev/null 2>&1; then
        sudo zfs create -p -o mountpoint=none "$CINDER_ZFS_ROOT_DATASET"
    fi
    echo "Backend $be_name: pool $pool, root dataset $CINDER_ZFS_ROOT_DATASET"
}

# cleanup_cinder_backend_zfs <be_name> - destroy the backend's volumes (called by cleanup_cinder)
function cleanup_cinder_backend_zfs {
    local be_name=$1
    if [[ "$CINDER_ZFS_DESTROY_ON_UNSTACK" != "True" ]] || ! _cinder_zfs_node_is_local; then
        return
    fi
    # Only the root dataset: never the pool, and never a dataset outside it (-r, not -R).
    if [[ "$CINDER_ZFS_ROOT_DATASET" == */* ]] && \
            sudo zfs list -H -o name "$CINDER_ZFS_ROOT_DATASET" >/dev/null 2>&1; then
        sudo zfs destroy -r "$CINDER_ZFS_ROOT_DATASET" || \
            warn $LINENO "could not destroy $CINDER_ZFS_ROOT_DATASET of backend $be_name"
    fi
}

# Configuration
# -------------

# configure_cinder_zfs_agent_key - the driver's key, its forced command, the node's host key
function configure_cinder_zfs_agent_key {
    if [[ ! -f "$CINDER_ZFS_SSH_KEY" ]]; then
        ssh-keygen -q -t ed25519 -N "" -C "$CINDER_ZFS_KEY_COMMENT" -f "$CINDER_ZFS_SSH_KEY"
    fi
    if ! _cinder_zfs_agent_on_this_host; then
        echo "Remote storage node: authorize $CINDER_ZFS_SSH_KEY.pub for $CINDER_ZFS_SSH_USER" \
            "on $CINDER_ZFS_SSH_HOST with the agent as its forced command" \
            "(etc/agent-authorized_keys.example): $(cat "$CINDER_ZFS_SSH_KEY.pub")"
        if [[ ! -s "$CINDER_ZFS_SSH_KNOWN_HOSTS" ]]; then
            warn $LINENO "$CINDER_ZFS_SSH_KNOWN_HOSTS is missing: put the node's host key there"
        fi
        return
    fi
    local home line
    home=$(_cinder_zfs_user_home "$CINDER_ZFS_SSH_USER")
    line="restrict,command=\"cd $CINDER_ZFS_AGENT_DIR && exec /usr/bin/python3 -m"
    line+=" cinder_zfs_ocfs2.agent --root $CINDER_ZFS_ROOT_DATASET\" $(cat "$CINDER_ZFS_SSH_KEY.pub")"
    sudo install -d -o "$CINDER_ZFS_SSH_USER" -m 700 "$home/.ssh"
    sudo touch "$home/.ssh/authorized_keys"
    sudo sed -i "/ $CINDER_ZFS_KEY_COMMENT\$/d" "$home/.ssh/authorized_keys"
    echo "$line" | sudo tee -a "$home/.ssh/authorized_keys" >/dev/null
    sudo chown "$CINDER_ZFS_SSH_USER" "$home/.ssh/authorized_keys"
    sudo chmod 600 "$home/.ssh/authorized_keys"
    ssh-keyscan -p "$CINDER_ZFS_SSH_PORT" -t ed25519 "$CINDER_ZFS_SSH_HOST" \
        > "$CINDER_ZFS_SSH_KNOWN_HOSTS" 2>/dev/null || true
    if [[ ! -s "$CINDER_ZFS_SSH_KNOWN_HOSTS" ]]; then
        die $LINENO "No ed25519 host key from sshd on $CINDER_ZFS_SSH_HOST:$CINDER_ZFS_SSH_PORT"
    fi
}

# configure_cinder_backend_zfs_section <be_name> - the backend section of cinder.conf
function configure_cinder_backend_zfs_section {
    local be_name=$1
    local conf line enabled
    conf=$(_cinder_zfs_backend_conf "$be_name") || \
        die $LINENO "cinder-zfs-backend-conf rejected the settings (see above)"
    # iniset adds a new key right under the section header: the lines go in last first, so
    # the section reads in cinder-zfs-backend-conf's order.
    while IFS= read -r line; do
        iniset "$CINDER_CONF" "$be_name" "${line%%=*}" "${line#*=}"
    done <<< "$(tac <<< "$conf")"
    # lib/cinder wrote enabled_backends from CINDER_ENABLED_BACKENDS; make sure of it.
    enabled=$(iniget "$CINDER_CONF" DEFAULT enabled_backends)
    if [[ ",$enabled," != *",$be_name,"* ]]; then
        iniset "$CINDER_CONF" DEFAULT enabled_backends "${enabled:+$enabled,}$be_name"
    fi
}

# configure_cinder_zfs_ocfs2 - everything cinder-volume needs before it starts
function configure_cinder_zfs_ocfs2 {
    local be_name
    be_name=$(_cinder_zfs_backend_name) || die $LINENO "no zfs backend to configure"
    if [[ "$CINDER_ZFS_AGENT_MODE" == "local" ]]; then
        # cinder-volume runs as $STACK_USER: the agent, run as root through cinder-rootwrap,
        # does every zfs/zpool/mkfs.ocfs2 (the filters grant nothing else).
        sudo install -o root -g root -m 644 \
            "$CINDER_ZFS_OCFS2_DIR/etc/rootwrap.d/zfs-ocfs2.filters" \
            "$CINDER_CONF_DIR/rootwrap.d/zfs-ocfs2.filters"
    else
        configure_cinder_zfs_agent_key
    fi
    configure_cinder_backend_zfs_section "$be_name"
}

# create_cinder_zfs_volume_types - the backend's type and the OCFS2-formatted type
function create_cinder_zfs_volume_types {
    local be_name
    be_name=$(_cinder_zfs_backend_name) || die $LINENO "no zfs backend for the volume types"
    _cinder_zfs_volume_type "$be_name" "ZFS zvols (backend $be_name)" \
        "volume_backend_name=$be_name"
    if [[ -n "$CINDER_ZFS_OCFS2_VOLUME_TYPE" ]]; then
        _cinder_zfs_volume_type "$CINDER_ZFS_OCFS2_VOLUME_TYPE" \
            "ZFS zvols formatted with OCFS2, multi-attachable (backend $be_name)" \
            "volume_backend_name=$be_name" \
            "ocfs2:format=true" \
            "ocfs2:slots=$CINDER_ZFS_OCFS2_SLOTS" \
            "ocfs2:cluster_stack=$CINDER_ZFS_OCFS2_CLUSTER_STACK" \
            "multiattach=<is> True"
    fi
}

# configure_tempest_cinder_zfs - Tempest's volume feature flags for what the driver supports
function configure_tempest_cinder_zfs {
    local backup=False
    if is_service_enabled c-bak; then
        backup=True
    fi
    iniset "$TEMPEST_CONFIG" volume-feature-enabled snapshot True
    iniset "$TEMPEST_CONFIG" volume-feature-enabled clone True
    iniset "$TEMPEST_CONFIG" volume-feature-enabled backup "$backup"
    iniset "$TEMPEST_CONFIG" volume-feature-enabled extend_volume_with_snapshot True
    iniset "$TEMPEST_CONFIG" volume-feature-enabled extend_attached_volume \
        "$(trueorfalse False TEMPEST_EXTEND_ATTACHED_VOLUME)"
    iniset "$TEMPEST_CONFIG" volume-feature-enabled manage_volume \
        "$(trueorfalse False TEMPEST_VOLUME_MANAGE_VOLUME)"
    iniset "$TEMPEST_CONFIG" volume-feature-enabled manage_snapshot \
        "$(trueorfalse False TEMPEST_VOLUME_MANAGE_SNAPSHOT)"
    # cinder-tempest-plugin's flags
    iniset "$TEMPEST_CONFIG" volume-feature-enabled volume_revert \
        "$(trueorfalse False TEMPEST_VOLUME_REVERT_TO_SNAPSHOT)"
    iniset "$TEMPEST_CONFIG" volume-feature-enabled consistency_group \
        "$CINDER_ZFS_TEMPEST_CONSISTENCY_GROUP"
    # Manage references in this driver's names: zvol volume-<id>, snapshot snapshot-<id>.
    iniset "$TEMPEST_CONFIG" volume manage_volume_ref "source-name,volume-%s"
    iniset "$TEMPEST_CONFIG" volume manage_snapshot_ref "source-name,snapshot-%s"
    if [[ "$CINDER_ENABLED_BACKENDS" != *,* ]]; then
        iniset "$TEMPEST_CONFIG" volume storage_protocol iSCSI
        iniset "$TEMPEST_CONFIG" volume vendor_name cinder-zfs-ocfs2
    fi
    if [[ "${ENABLE_VOLUME_MULTIATTACH:-False}" != "True" && \
            "$CINDER_ZFS_TEMPEST_MULTIATTACH" == "True" && \
            -n "$CINDER_ZFS_OCFS2_VOLUME_TYPE" ]]; then
        iniset "$TEMPEST_CONFIG" compute-feature-enabled volume_multiattach True
        iniset "$TEMPEST_CONFIG" volume volume_type_multiattach "$CINDER_ZFS_OCFS2_VOLUME_TYPE"
    fi
}

# Clean
# -----

# clean_cinder_zfs_ocfs2 - what the plugin made on this host (packages stay installed)
function clean_cinder_zfs_ocfs2 {
    if [[ -z "$CINDER_ZFS_POOL" ]]; then
        if sudo zpool list -H -o name "$CINDER_ZFS_BACKING_POOL" >/dev/null 2>&1; then
            sudo zpool destroy -f "$CINDER_ZFS_BACKING_POOL"
        fi
        rm -f "$CINDER_ZFS_BACKING_FILE"
    fi
    sudo rm -f "$CINDER_CONF_DIR/rootwrap.d/zfs-ocfs2.filters"
    if _cinder_zfs_agent_on_this_host; then
        local home
        home=$(_cinder_zfs_user_home "$CINDER_ZFS_SSH_USER")
        if sudo test -f "$home/.ssh/authorized_keys"; then
            sudo sed -i "/ $CINDER_ZFS_KEY_COMMENT\$/d" "$home/.ssh/authorized_keys"
        fi
        sudo rm -rf "$CINDER_ZFS_AGENT_DIR"
        rm -f "$CINDER_ZFS_SSH_KEY" "$CINDER_ZFS_SSH_KEY.pub" "$CINDER_ZFS_SSH_KNOWN_HOSTS"
    fi
}

# Restore xtrace: the phases below show up in DevStack's log
$_XTRACE_CINDER_ZFS

# Dispatcher
# ----------

if [[ "$1" == "stack" && "$2" == "install" ]]; then
    echo_summary "Installing OpenZFS and cinder-zfs-ocfs2"
    if is_service_enabled c-vol; then
        install_cinder_zfs_packages
        if _cinder_zfs_agent_on_this_host; then
            install_cinder_zfs_agent
        fi
    fi
    if is_service_enabled cinder; then
        install_cinder_zfs_ocfs2
    fi
elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
    if is_service_enabled c-vol; then
        echo_summary "Configuring the cinder-zfs-ocfs2 backend"
        configure_cinder_zfs_ocfs2
    fi
elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
    if is_service_enabled c-api && is_service_enabled keystone; then
        echo_summary "Creating the cinder-zfs-ocfs2 volume types"
        create_cinder_zfs_volume_types
    fi
elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
    if is_service_enabled tempest; then
        echo_summary "Configuring Tempest for cinder-zfs-ocfs2"
        configure_tempest_cinder_zfs
    fi
elif [[ "$1" == "unstack" ]]; then
    # Nothing of the plugin runs as a service. DevStack stops cinder after this phase and then
    # calls cleanup_cinder_backend_zfs, which destroys the volumes.
    :
elif [[ "$1" == "clean" ]]; then
    if is_service_enabled c-vol; then
        echo_summary "Removing the cinder-zfs-ocfs2 pool and agent"
        clean_cinder_zfs_ocfs2
    fi
fi

# Tell emacs to use shell-script-mode
## Local variables:
## mode: shell-script
## End:
