"""Request routing without a Ray round trip per rollout when there is one rollout replica.

verl 0.9.1's ``LLMServerClient.generate`` (``verl/workers/rollout/llm_server.py:121``) asks the
shared ``GlobalRequestLoadBalancer`` actor for a server before every request (an awaited Ray call,
:81) and tells it when the request ends (a second Ray call, :88). With several replicas that buys
least-loaded routing; with one replica (every CPU run, and any single-server GPU run) the answer is
always the same server, and the two calls per rollout cost the balancer actor and the agent-loop
worker CPU time that the 2-core demo step pays for (the balancer process alone sat at ~12 % of a
core through a demo run).

:class:`SingleReplicaClient` looks at the pool once, on its first request (one acquisition through
verl's balancer, handed straight back, while concurrent first requests wait for it); if the pool
holds exactly one server, it keeps that server's handle and routes every request to it locally.
Otherwise every request goes through the balancer as in verl, and is released to it. Pools of two or more servers, and verl's other clients (fully-async, elastic scaling),
keep verl's routing unchanged: :func:`single_replica_client` replaces only a plain
``LLMServerClient``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from verl.workers.rollout.llm_server import LLMServerClient


class SingleReplicaClient(LLMServerClient):
    """verl's ``LLMServerClient`` that stops asking the load balancer once it knows the pool is one server."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pinned: Optional[tuple[str, Any]] = None  # (server_id, handle) when the pool is one server
        self._probe: Optional[asyncio.Future] = None  # the one look at the pool, shared by concurrent requests
        self._balancer_held = 0  # acquisitions made through the balancer and not yet released to it
        self.local_routes = 0  # requests routed without the balancer (perf/rollout_local_route_share)
        self.balancer_routes = 0  # requests routed by the balancer

    async def _probe_pool(self, request_id: str, extra: dict) -> None:
        # One acquisition (verl's own call, so the balancer's field negotiation happens as usual),
        # handed straight back: it only tells us a server's handle and the pool's size.
        server_id, handle = await super()._acquire_server(request_id, **extra)
        try:
            servers = await self._load_balancer.get_all_servers.remote()
        finally:
            super()._release_server(server_id, request_id=request_id)
        if len(servers) == 1:
            self._pinned = (server_id, handle)

    async def _acquire_server(self, request_id: str, **extra) -> tuple[str, Any]:
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._probe_pool(request_id, extra))
        try:
            await asyncio.shield(self._probe)
        except Exception:
            self._probe = None  # look again on the next request
            raise
        if self._pinned is not None:
            self.local_routes += 1
            return self._pinned
        server_id, handle = await super()._acquire_server(request_id, **extra)
        self._balancer_held += 1
        self.balancer_routes += 1
        return server_id, handle

    def _release_server(self, server_id: str, request_id: str | None = None) -> None:
        # Only balancer acquisitions are released to it; with one server its counts route nothing.
        if self._balancer_held > 0:
            self._balancer_held -= 1
            super()._release_server(server_id, request_id=request_id)


def single_replica_client(client: Any) -> Any:
    """``client`` as a :class:`SingleReplicaClient` when it is verl's plain ``LLMServerClient``, else unchanged."""
    if type(client) is not LLMServerClient:
        return client
    routed = SingleReplicaClient(config=client.config, load_balancer_handle=client._load_balancer)
    return routed
