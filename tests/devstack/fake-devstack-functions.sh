#!/bin/bash
#
# A fake DevStack for tests/devstack: the functions devstack/plugin.sh calls, under their
# DevStack names, that RECORD what they were asked to do instead of doing it, plus the parts of
# stack.sh / unstack.sh / clean.sh / lib/cinder / lib/tempest that call the plugin, in
# DevStack's order (fake_stack, fake_unstack, fake_clean).
#
# iniset/iniget write and read real ini files (tests/devstack/fake_ini.py, DevStack's
# semantics); package installs, pip, sudo (zpool, zfs, install, tee...), openstack, ssh-keygen
# and ssh-keyscan are recorded in $FAKE_STATE/calls.log, one call per line, argv joined by tabs.
# zpool/zfs/openstack keep just enough state under $FAKE_STATE to answer the plugin's
# existence checks. Nothing runs as root, nothing touches the network.
#
# Needs: FAKE_STATE (a directory), FAKE_PYTHON (python with the package importable),
# PLUGIN_DIR (devstack/), and the DevStack variables the test sets (see test_plugin.py).
# shellcheck shell=bash

FAKE_TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$FAKE_STATE/pools" "$FAKE_STATE/datasets" "$FAKE_STATE/types"

function fake_record {
    local IFS=$'\t'
    printf '%s\n' "$*" >> "$FAKE_STATE/calls.log"
}

# --- functions-common, inc/ini-config, inc/python ----------------------------------------------

function die {
    local line=$1
    shift
    fake_record die "$@"
    echo "[fake devstack] die (line $line): $*" >&2
    exit 1
}

function warn {
    local line=$1
    shift
    fake_record warn "$@"
    echo "[fake devstack] WARNING (line $line): $*" >&2
}

function echo_summary {
    echo "[fake devstack] $*"
}

function trueorfalse {
    local default=$1
    local testval=${!2:-}
    case "$testval" in
        "1" | [yY]es | "YES" | [tT]rue | "TRUE" ) echo "True" ;;
        "0" | [nN]o | "NO" | [fF]alse | "FALSE" ) echo "False" ;;
        * ) echo "$default" ;;
    esac
}

function is_service_enabled {
    local service
    for service in "$@"; do
        [[ ",$ENABLED_SERVICES," == *",$service,"* ]] && return 0
        if type "is_${service}_enabled" >/dev/null 2>&1 && "is_${service}_enabled"; then
            return 0
        fi
    done
    return 1
}

# lib/cinder, lib/keystone
function is_cinder_enabled {
    [[ ",$ENABLED_SERVICES" == *",c-"* ]]
}

function is_keystone_enabled {
    [[ ",$ENABLED_SERVICES," == *",key,"* ]]
}

function is_ubuntu {
    [[ "${os_PACKAGE:-}" == "deb" ]]
}

function is_fedora {
    [[ "${os_PACKAGE:-}" == "rpm" ]]
}

function iniset {
    if [[ "$1" == "-sudo" ]]; then
        shift
    fi
    fake_record iniset "$@"
    "$FAKE_PYTHON" -S -E "$FAKE_TESTS_DIR/fake_ini.py" set "$1" "$2" "$3" "$4"
}

function iniget {
    "$FAKE_PYTHON" -S -E "$FAKE_TESTS_DIR/fake_ini.py" get "$1" "$2" "$3"
}

function install_package {
    fake_record install_package "$@"
}

function pip_install {
    fake_record pip_install "PIP_VIRTUAL_ENV=${PIP_VIRTUAL_ENV:-}" "$@"
}

function setup_develop {
    fake_record setup_develop "$@"
    pip_install -e "$1"
}

# --- external commands ------------------------------------------------------------------------

function _fake_zpool {
    local pool
    case "$1" in
        list)
            [[ -e "$FAKE_STATE/pools/${*: -1}" ]] ;;
        create)
            pool=${*: -2:1}
            touch "$FAKE_STATE/pools/$pool" ;;
        import)
            pool=${*: -1}
            [[ ",${FAKE_IMPORTABLE_POOLS:-}," == *",$pool,"* ]] && touch "$FAKE_STATE/pools/$pool" ;;
        destroy)
            rm -f "$FAKE_STATE/pools/${*: -1}" ;;
    esac
}

function _fake_zfs {
    local name=${*: -1}
    local key=${name//\//%}
    case "$1" in
        list)
            [[ -e "$FAKE_STATE/datasets/$key" || -e "$FAKE_STATE/pools/$name" ]] ;;
        create)
            [[ -e "$FAKE_STATE/pools/${name%%/*}" ]] || return 1
            touch "$FAKE_STATE/datasets/$key" ;;
        destroy)
            rm -f "$FAKE_STATE/datasets/$key" "$FAKE_STATE/datasets/$key%"* ;;
    esac
}

function sudo {
    case "$1" in
        zpool)
            fake_record sudo "$@"
            shift
            _fake_zpool "$@" ;;
        zfs)
            fake_record sudo "$@"
            shift
            _fake_zfs "$@" ;;
        tee)
            fake_record sudo "$@" "stdin=$(cat)" ;;
        test)
            # the files root owns are not looked at: they "exist"
            fake_record sudo "$@" ;;
        *)
            fake_record sudo "$@" ;;
    esac
}

function truncate {
    fake_record truncate "$@"
    : > "${*: -1}"
}

function apt-cache {
    fake_record apt-cache "$@"
    [[ "${FAKE_APT_KNOWS_ZFS:-False}" == "True" ]]
}

function ssh-keygen {
    fake_record ssh-keygen "$@"
    local comment="" file="" arg prev=""
    for arg in "$@"; do
        [[ "$prev" == "-C" ]] && comment=$arg
        [[ "$prev" == "-f" ]] && file=$arg
        prev=$arg
    done
    echo "FAKE PRIVATE KEY" > "$file"
    echo "ssh-ed25519 AAAAC3NzaFAKE $comment" > "$file.pub"
}

function ssh-keyscan {
    fake_record ssh-keyscan "$@"
    echo "[${*: -1}]:2222 ssh-ed25519 AAAAC3NzaFAKEHOSTKEY"
}

function openstack {
    fake_record openstack "$@"
    local -a args=()
    local arg
    for arg in "$@"; do
        [[ "$arg" == --os-region-name=* ]] || args+=("$arg")
    done
    local name=${args[-1]}
    [[ "${args[0]} ${args[1]}" == "volume type" ]] || return 0
    case "${args[2]}" in
        show)
            [[ -e "$FAKE_STATE/types/$name" ]] ;;
        create)
            touch "$FAKE_STATE/types/$name"
            _fake_type_properties "$name" "${args[@]:3}" ;;
        set)
            [[ -e "$FAKE_STATE/types/$name" ]] || return 1
            _fake_type_properties "$name" "${args[@]:3}" ;;
    esac
}

function _fake_type_properties {
    local name=$1
    shift
    local prev=""
    for arg in "$@"; do
        [[ "$prev" == "--property" ]] && echo "$arg" >> "$FAKE_STATE/types/$name"
        prev=$arg
    done
}

# --- lib/cinder, lib/tempest: the parts that call into a backend plugin -----------------------

function fake_lib_cinder_defaults {
    CINDER_ENABLED_BACKENDS=${CINDER_ENABLED_BACKENDS:-lvm:lvmdriver-1}
    CINDER_TARGET_HELPER=${CINDER_TARGET_HELPER:-lioadm}
    CINDER_TARGET_PORT=${CINDER_TARGET_PORT:-3260}
    CINDER_MY_IP=${CINDER_MY_IP:-$HOST_IP}
}

function fake_cinder_backends {
    local hook=$1
    local be
    for be in ${CINDER_ENABLED_BACKENDS//,/ }; do
        if type "${hook}_${be%%:*}" >/dev/null 2>&1; then
            fake_record hook "$hook" "${be%%:*}"
            "${hook}_${be%%:*}" "${be##*:}"
        fi
    done
}

function fake_configure_cinder {
    rm -f "$CINDER_CONF"
    iniset "$CINDER_CONF" DEFAULT target_helper "$CINDER_TARGET_HELPER"
    iniset "$CINDER_CONF" DEFAULT my_ip "$CINDER_MY_IP"
    local enabled_backends="" default_name="" be
    fake_cinder_backends configure_cinder_backend
    for be in ${CINDER_ENABLED_BACKENDS//,/ }; do
        [[ -z "$default_name" ]] && default_name=${be##*:}
        enabled_backends+=${be##*:},
    done
    iniset "$CINDER_CONF" DEFAULT enabled_backends "${enabled_backends%,*}"
    iniset "$CINDER_CONF" DEFAULT default_volume_type "$default_name"
}

function fake_create_volume_types {
    local be
    for be in ${CINDER_ENABLED_BACKENDS//,/ }; do
        openstack --os-region-name="$REGION_NAME" volume type create \
            --property volume_backend_name="${be##*:}" "${be##*:}"
    done
}

function fake_configure_tempest {
    rm -f "$TEMPEST_CONFIG"
    iniset "$TEMPEST_CONFIG" volume-feature-enabled manage_snapshot \
        "$(trueorfalse False TEMPEST_VOLUME_MANAGE_SNAPSHOT)"
    iniset "$TEMPEST_CONFIG" volume-feature-enabled manage_volume \
        "$(trueorfalse False TEMPEST_VOLUME_MANAGE_VOLUME)"
    iniset "$TEMPEST_CONFIG" volume-feature-enabled extend_attached_volume \
        "$(trueorfalse False TEMPEST_EXTEND_ATTACHED_VOLUME)"
    iniset "$TEMPEST_CONFIG" volume-feature-enabled volume_revert \
        "$(trueorfalse False TEMPEST_VOLUME_REVERT_TO_SNAPSHOT)"
    if ! is_service_enabled c-bak; then
        iniset "$TEMPEST_CONFIG" volume-feature-enabled backup False
    fi
}

# --- stack.sh, unstack.sh, clean.sh -----------------------------------------------------------

function fake_source_plugin {
    # shellcheck source=/dev/null
    source "$PLUGIN_DIR/override-defaults"
    fake_lib_cinder_defaults
    # shellcheck source=/dev/null
    source "$PLUGIN_DIR/settings"
}

function fake_phase {
    fake_record phase "$@"
    # shellcheck source=/dev/null
    source "$PLUGIN_DIR/plugin.sh" "$@"
}

function fake_stack {
    set -o errexit
    set -o nounset
    fake_source_plugin
    fake_phase stack pre-install
    fake_configure_cinder
    fake_phase stack install
    fake_cinder_backends init_cinder_backend
    fake_phase stack post-config
    fake_create_volume_types
    fake_phase stack extra
    fake_configure_tempest
    fake_phase stack test-config
}

function fake_unstack {
    fake_source_plugin
    fake_phase unstack
    fake_cinder_backends cleanup_cinder_backend
}

function fake_clean {
    fake_unstack
    fake_phase clean
    fake_cinder_backends cleanup_cinder_backend
}
