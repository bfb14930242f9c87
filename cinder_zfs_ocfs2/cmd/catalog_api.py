"""cinder-zfs-catalog-api: serve the catalog API (a single process, for development and tests).

Production serves cinder_zfs_ocfs2.api.wsgi:application with gunicorn. Options: [catalog_api]
bind_host / bind_port, and the rest as in etc/cinder-zfs-catalog-api.conf.sample.
"""

from __future__ import annotations

import socketserver
import sys
from collections.abc import Sequence
from wsgiref import simple_server

from oslo_log import log as logging

from cinder_zfs_ocfs2.api import opts, wsgi

LOG = logging.getLogger(__name__)


class _ThreadingServer(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True


class _QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, fmt, *args):   # requests go to oslo.log, not stderr
        LOG.info("%s %s", self.address_string(), fmt % args)


def main(argv: Sequence[str] | None = None) -> int:
    conf = wsgi.load_config(sys.argv[1:] if argv is None else argv)
    logging.setup(conf, wsgi.PROG)
    application = wsgi.build_app(conf)
    group = conf[opts.GROUP]
    server = simple_server.make_server(group.bind_host, group.bind_port, application,
                                       server_class=_ThreadingServer,
                                       handler_class=_QuietHandler)
    LOG.info("Catalog API on http://%s:%d/", group.bind_host, group.bind_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
