"""The JSON control API under ``/_sim/``: lets tests in other processes drive a simulator.

Everything here is also reachable as a Python method or attribute of ``Simulator``; the HTTP
form exists because keyshim's process tests run the simulator as a separate ``shim simulator``
process. The API has no authentication: the simulator is a test tool for loopback use.

| route | body | answer |
|---|---|---|
| ``GET /_sim/stats`` | | ``Simulator.stats()`` |
| ``GET /_sim/config`` | | the whole config |
| ``POST /_sim/config`` | any SimConfig fields | the whole config (400 on a bad field) |
| ``POST /_sim/token-failures`` | ``{"failures": [...], "clear": false}`` | ``{"pending": n}`` |
| ``POST /_sim/xmlrpc-failures`` | same, for the XML-RPC endpoint | ``{"pending": n}`` |
| ``POST /_sim/release`` | ``{"count": n}`` (default: all) | ``{"released": n, "held": m}`` |
| ``POST /_sim/clients`` | | ``{"client_id", "client_secret"}`` |
| ``POST /_sim/tokens`` | ``{"client_id"}`` | a token pair as ``/token`` answers it |
| ``POST /_sim/service-keys`` | | ``{"service_key"}`` |
| ``POST /_sim/revoke`` | ``{"token"}`` (access, refresh or service key) | ``{"revoked": bool}`` |
| ``POST /_sim/clock`` | ``{"advance": seconds}`` | ``{"now": t}`` (moves simulated time) |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.config import ConfigError, apply_updates, config_dict
from shim.simulator.failures import FailureQueue

if TYPE_CHECKING:
    from shim.simulator.app import Simulator


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def control(sim: Simulator, method: str, route: str, body: Any) -> Answer:
    """Run one control request; ``body`` is the decoded JSON (``{}`` for none)."""
    try:
        if not isinstance(body, dict):
            raise ControlError(400, "the body must be a JSON object")
        return json_answer(200, _route(sim, method, route, body))
    except ControlError as exc:
        return json_answer(exc.status, {"error": str(exc)})
    except (ConfigError, ValueError) as exc:
        return json_answer(400, {"error": str(exc)})


def _route(sim: Simulator, method: str, route: str, body: dict[str, Any]) -> Any:
    if method == "GET" and route == "stats":
        return sim.stats()
    if route == "config":
        if method == "POST":
            apply_updates(sim.config, body)
        return config_dict(sim.config)
    if method != "POST":
        raise ControlError(405, "use POST")
    if route == "token-failures":
        return _queue(sim.token_endpoint.failures, body)
    if route == "xmlrpc-failures":
        return _queue(sim.xmlrpc_endpoint.failures, body)
    if route == "release":
        count = body.get("count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
            raise ControlError(400, "count must be an integer")
        return {"released": sim.release(count), "held": sim.token_endpoint.gate.held}
    if route == "clients":
        client_id, secret = sim.add_client()
        return {"client_id": client_id, "client_secret": secret}
    if route == "tokens":
        try:
            return sim.issue_tokens(str(body.get("client_id", "")))
        except KeyError:
            raise ControlError(404, "unknown client_id") from None
    if route == "service-keys":
        return {"service_key": sim.add_service_key()}
    if route == "revoke":
        return {"revoked": sim.auth.revoke(str(body.get("token", "")))}
    if route == "clock":
        advance = body.get("advance", 0)
        if isinstance(advance, bool) or not isinstance(advance, (int, float)):
            raise ControlError(400, "advance must be a number of seconds")
        sim.clock_offset += float(advance)
        return {"now": sim.now()}
    raise ControlError(404, f"no control route {route!r}")


def _queue(queue: FailureQueue, body: dict[str, Any]) -> dict[str, int]:
    failures = body.get("failures", [])
    if not isinstance(failures, list):
        raise ControlError(400, "failures must be a list")
    if body.get("clear"):
        queue.clear()
    queue.push(failures)
    return {"pending": len(queue)}
