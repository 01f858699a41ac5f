"""The acquisition's own control requests: ``info``, ``status``, ``history``, ``baseline``.

(The marker channel and the session manager register theirs: ``mark``, ``protocol``,
``session_*``.)  Each handler answers from the acquisition's parts in the loop's thread,
so it sees the stream exactly between two frames.
"""

from __future__ import annotations

from typing import Any

import structlog

from .control import Reply
from .history import history_reply
from .status import assemble_status

log = structlog.get_logger("nirsd.loop")


class StreamRequests:
    """The handlers, registered on the acquisition's control server."""

    def __init__(self, acq: Any) -> None:
        self.acq = acq
        for cmd in ("info", "history", "status", "baseline"):
            acq.control.register(cmd, getattr(self, "_cmd_" + cmd))

    def _cmd_info(self, req: dict) -> Reply:
        from importlib.metadata import version

        acq = self.acq
        cfg, device, pipeline = acq.cfg, acq.device, acq.pipeline
        reply: dict[str, Any] = {
            "stream": acq.publisher.stream,
            "version": version("nirsd"),
            "driver": device.driver.name,
            "port": device.port,
            "state": device.state,
            "seq": acq.stream.next_seq,
            "labels": acq.labels(),
            "endpoints": {"data": cfg.endpoints.data, "control": cfg.endpoints.control},
        }
        reply["placement"] = cfg.probe.describe()
        if pipeline is not None:
            reply.update(pipeline.probe.describe())
            reply["oldest"] = pipeline.ring.oldest
            reply["conversion"] = pipeline.describe_conversion()
        reply.update(acq.info_body())
        return reply, []

    def _cmd_status(self, req: dict) -> Reply:
        return assemble_status(self.acq), []

    def _cmd_history(self, req: dict) -> Reply:
        return history_reply(self.acq.pipeline, self.acq.publisher, req)

    def _cmd_baseline(self, req: dict) -> Reply:
        acq = self.acq
        if acq.pipeline is None:
            return {"ok": False, "error": "no data yet: the device has not streamed"}, []
        seq = acq.stream.next_seq
        acq.pipeline.rebaseline(seq)
        body = {"event": "baseline", "seq": seq, "seconds": acq.cfg.baseline.seconds}
        acq.publisher.publish_event("status", body)
        log.info("baseline_restarted", seq=seq)
        return body, []
