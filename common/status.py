"""Per-service stream accounting behind the GetStatus RPC: the service's own
view of active, completed, cancelled and failed streams."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import AsyncIterator


@dataclasses.dataclass
class StreamStats:
    service: str
    model: str
    active: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0

    @contextlib.asynccontextmanager
    async def track(self) -> AsyncIterator[None]:
        """Count one stream: cancelled if the client went away, failed on error."""
        self.active += 1
        try:
            yield
        except (asyncio.CancelledError, GeneratorExit):
            # A streaming handler that the client cancels while grpc is sending
            # (outside the handler) is closed later with GeneratorExit, not
            # CancelledError: both mean the client went away.
            self.cancelled += 1
            raise
        except Exception:
            self.failed += 1
            raise
        else:
            self.completed += 1
        finally:
            self.active -= 1


def status_to_pb(stats: StreamStats):
    """The GetStatus reply every service sends (voice.v1.ServiceStatus)."""
    from common.stubs import common_pb2

    return common_pb2.ServiceStatus(
        service=stats.service, model=stats.model, active_streams=stats.active,
        completed_streams=stats.completed, cancelled_streams=stats.cancelled,
        failed_streams=stats.failed)
