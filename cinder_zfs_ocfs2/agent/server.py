"""Serve NodeOperations over stdin/stdout: the SSH forced command of the driver's key.

Requests run concurrently on a small thread pool (a slow send|receive must not hold up a
snapshot); replies are written whole under a lock. A bad frame, an unknown operation, a name
outside the root or an oversized request gets a structured error, and the agent keeps serving.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading

from cinder_zfs_ocfs2.agent import protocol
from cinder_zfs_ocfs2.agent.ops import NodeOperations
from cinder_zfs_ocfs2.zfs import errors

LOG = logging.getLogger(__name__)


class _BadFrame(Exception):
    """A frame the agent cannot take; answered with ``request_id`` when one could be read."""

    def __init__(self, message: str, request_id=None):
        super().__init__(message)
        self.request_id = request_id


class AgentServer:
    def __init__(self, operations: NodeOperations, reader, writer, workers: int = 8,
                 extra_hello: dict | None = None):
        self.ops = operations
        self._reader = reader
        self._writer = writer
        self._write_lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
        self._hello = {"type": "hello", "protocol": protocol.PROTOCOL_VERSION,
                       "agent": "cinder-zfs-ocfs2", "root": operations.names.root,
                       "pyzfs": operations.lzc is not None,
                       "operations": operations.operations, **(extra_hello or {})}

    def _send(self, message: dict) -> None:
        data = protocol.encode(message)
        with self._write_lock:
            self._writer.write(data)
            self._writer.flush()

    def _skip_rest_of_line(self) -> None:
        while True:
            chunk = self._reader.readline(protocol.MAX_FRAME)
            if not chunk or chunk.endswith(b"\n"):
                return

    def handle(self, request_id, op, args, wants_progress: bool = False) -> dict:
        def report(info: dict) -> None:
            self._send(protocol.progress(request_id, info))

        try:
            return protocol.ok(request_id, self.ops.dispatch(
                op, args, progress=report if wants_progress else None))
        except errors.ZFSError as exc:
            return protocol.error(request_id, exc.code, exc.message, exc.name)
        except Exception as exc:  # never let one request kill the agent
            LOG.exception("operation %s failed", op)
            return protocol.error(request_id, "failed", f"{type(exc).__name__}: {exc}")

    def _serve_one(self, request_id, op, args, wants_progress: bool) -> None:
        reply = self.handle(request_id, op, args, wants_progress)
        try:
            self._send(reply)
        except (OSError, ValueError) as exc:  # the session is gone; nobody awaits the reply
            LOG.warning("cannot reply to request %r (%s): %s", request_id, op, exc)

    def _refuse(self, request_id, exc: Exception) -> None:
        if isinstance(exc, errors.ZFSError):
            self._send(protocol.error(request_id, exc.code, exc.message, exc.name))
        else:
            LOG.error("stream failed: %s", exc)
            self._send(protocol.error(request_id, "failed", f"{type(exc).__name__}: {exc}"))

    def _serve_stream(self, request_id, op, args) -> None:
        """One volume data stream on this channel (protocol.STREAM_OPS)."""
        started = []

        def go_ahead(volsize: int) -> None:
            self._send(protocol.ok(request_id, {"size": volsize}))
            started.append(True)

        try:
            if not isinstance(args, dict):
                raise errors.InvalidArgument("args must be an object")
            if op == "write_volume":
                copied = self.ops.write_volume(args.get("name"), args.get("size"), self._reader,
                                               go_ahead)
                self._send(protocol.ok(request_id, {"bytes": copied}))
            else:
                self.ops.read_volume(args.get("name"), self._writer, go_ahead)
                self._writer.flush()
        except Exception as exc:
            if op == "read_volume" and started:
                # Raw bytes are flowing: no room for a reply; the client sees a short stream.
                LOG.error("read_volume %s failed after the go-ahead: %s", args.get("name"), exc)
                return
            self._refuse(request_id, exc)

    def serve(self) -> None:
        self._send(self._hello)
        first = True
        try:
            while True:
                line = self._reader.readline(protocol.MAX_FRAME + 1)
                if not line:
                    return  # client closed the session
                if len(line) > protocol.MAX_FRAME and not line.endswith(b"\n"):
                    self._skip_rest_of_line()
                    self._send(protocol.error(protocol.peek_id(line), "invalid",
                                              f"frame exceeds {protocol.MAX_FRAME} bytes"))
                    continue
                if not line.strip():
                    continue
                try:
                    request = self._parse(line)
                except _BadFrame as exc:
                    self._send(protocol.error(exc.request_id, "invalid", str(exc)))
                    continue
                request_id, op, args = request["id"], request.get("op"), request.get("args", {})
                if op in protocol.STREAM_OPS:
                    if first:
                        self._serve_stream(request_id, op, args)
                        return  # the channel carried raw bytes: it ends with the stream
                    self._send(protocol.error(request_id, "invalid", f"{op} needs a channel of "
                                              f"its own (the first request of a session)"))
                    continue
                first = False
                self._pool.submit(self._serve_one, request_id, op, args,
                                  request.get("progress") is True)
        finally:
            self._pool.shutdown(wait=True)

    @staticmethod
    def _parse(line: bytes) -> dict:
        """The request in ``line``, or _BadFrame."""
        try:
            request = protocol.decode(line)
        except ValueError as exc:
            raise _BadFrame(f"malformed frame: {exc}", protocol.peek_id(line)) from None
        except Exception as exc:  # whatever a hostile frame finds in json: answer, go on
            LOG.error("unparsable frame: %s: %s", type(exc).__name__, exc)
            raise _BadFrame(f"malformed frame: {type(exc).__name__}",
                            protocol.peek_id(line)) from None
        if not protocol.valid_id(request.get("id")):
            raise _BadFrame("request without a valid id (an integer or a short string)")
        return request
