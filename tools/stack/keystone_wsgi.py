"""Keystone's WSGI application for gunicorn (tools/stack/stack.py starts it).

Keystone parses sys.argv with oslo.config when the application is built, and gunicorn's own
arguments are not Keystone's: hide them. The configuration comes from OS_KEYSTONE_CONFIG_FILES.
"""

import sys

_argv, sys.argv = sys.argv, sys.argv[:1]
try:
    from keystone.wsgi.api import application  # noqa: F401,E402
finally:
    sys.argv = _argv
