"""Policy defaults of the catalog API (oslo.policy), overridable in a policy file.

The personas are Keystone's default roles, as Cinder uses them: a project reader (member and
admin imply reader) reads its own project; the admin role or a system-scoped reader reads across
projects; internal snapshots and backend details are for admins. The sample file
etc/cinder-zfs-catalog-api.policy.yaml.sample is generated from these rules
(`make sample-config`; entry point ``oslo.policy.policies = cinder_zfs_ocfs2.api``).
"""

from __future__ import annotations

from oslo_config import cfg
from oslo_policy import policy

PREFIX = "zfs_catalog"

ADMIN = "role:admin"
SYSTEM_READER = "role:reader and system_scope:all"
PROJECT_READER = "role:reader and project_id:%(project_id)s"

HISTORY = f"{PREFIX}:volume:history"
NEAREST = f"{PREFIX}:snapshot:nearest"
LIST = f"{PREFIX}:snapshot:list"
USAGE = f"{PREFIX}:usage:show"
ALL_PROJECTS = f"{PREFIX}:all_projects"
INTERNAL = f"{PREFIX}:snapshot:internal"
BACKEND_DETAILS = f"{PREFIX}:snapshot:backend_details"

base_rules = [
    policy.RuleDefault("context_is_admin", ADMIN, description="The admin role."),
    policy.RuleDefault("system_reader", SYSTEM_READER,
                       description="A reader with a system-scoped token."),
    policy.RuleDefault("admin_or_system_reader", "rule:context_is_admin or rule:system_reader",
                       description="Reads across projects."),
    policy.RuleDefault("project_reader_or_above",
                       "rule:admin_or_system_reader or (" + PROJECT_READER + ")",
                       description="A reader (or member) of the project, or a cross-project "
                                   "reader."),
]

_READ = "rule:project_reader_or_above"


def _rule(name: str, check_str: str, description: str, *paths: str
          ) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(
        name=name, check_str=check_str, description=description,
        operations=[{"method": "GET", "path": p} for p in paths],
        scope_types=["project", "system"])


api_rules = [
    _rule(HISTORY, _READ, "List one volume's snapshots from the catalog, newest first.",
          "/v1/volumes/{volume_id}/snapshots"),
    _rule(NEAREST, _READ, "Find the newest snapshot at or before a time: of one volume, or of "
                          "every volume (or the given volumes) of a project, grouped into "
                          "consistent sets.",
          "/v1/volumes/{volume_id}/snapshots/nearest", "/v1/snapshots/nearest"),
    _rule(LIST, _READ, "List a project's snapshots, newest first, optionally in a time range.",
          "/v1/snapshots"),
    _rule(USAGE, _READ, "Show a project's snapshot count and bytes.", "/v1/usage"),
    _rule(ALL_PROJECTS, "rule:admin_or_system_reader",
          "Read other projects' rows: all_projects=true, project_id=<another>, and any "
          "project's volume by id.",
          "/v1/snapshots?all_projects=true", "/v1/usage?all_projects=true",
          "/v1/snapshots?project_id={project_id}"),
    _rule(INTERNAL, "rule:context_is_admin",
          "Include internal snapshots (clone temps, out-of-band, hidden) with "
          "include_internal=true.",
          "/v1/snapshots?include_internal=true",
          "/v1/volumes/{volume_id}/snapshots?include_internal=true"),
    _rule(BACKEND_DETAILS, "rule:context_is_admin",
          "See backend details of each snapshot: ZFS name, guid, backend, deferred destroy.",
          "/v1/volumes/{volume_id}/snapshots", "/v1/snapshots"),
]


def list_rules():
    return base_rules + api_rules


def get_enforcer(conf: cfg.ConfigOpts | None = None) -> policy.Enforcer:
    """An enforcer with the defaults registered (also the ``oslo.policy.enforcer`` hook)."""
    if conf is None:
        conf = cfg.ConfigOpts()
        conf([], project="cinder")
    enforcer = policy.Enforcer(conf)
    enforcer.register_defaults(list_rules())
    return enforcer
