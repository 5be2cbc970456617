"""The client's edits of the conversation's items: conversation.item.create,
.delete, .retrieve and .truncate, checked against the session state and
answered with their events (or a ProtocolError naming what was wrong).

Owned by the Conversation, which dispatches these events here; it reaches
the Conversation only through ``ItemHost``, the little it needs of it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from services.gateway import events, protocol
from services.gateway.protocol import ProtocolError
from services.gateway.response_wire import truncate_item
from services.gateway.session import Item, SessionState
from services.gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from services.gateway.response import Response


class ItemHost(Protocol):
    """What the item events need of the session that owns them."""
    state: SessionState
    settings: GatewaySettings
    response: Response | None

    def emit(self, event: dict[str, Any]) -> None: ...

    def save(self) -> None: ...

    def bound_items(self, added: str) -> str | None: ...


class ItemEvents:
    def __init__(self, host: ItemHost) -> None:
        self.host = host

    async def create(self, ev: dict) -> None:
        h = self.host
        item, prev = protocol.item_create(ev)
        if item.role == "system" and not h.settings.allow_system_items:
            # What a client adds is what the user says, not an instruction (docs/security.md).
            raise ProtocolError("system_items_not_allowed", "conversation.item.create: this gateway does not "
                                "accept 'system' items (GATEWAY_ALLOW_SYSTEM_ITEMS); use session.instructions",
                                "item.role", ev.get("event_id"))
        if h.state.find(item.id):
            raise ProtocolError("item_already_exists", f"conversation.item.create: an item with id "
                                f"'{item.id}' already exists", "item.id", ev.get("event_id"))
        try:
            h.state.insert(item, prev)
        except KeyError:
            raise ProtocolError("item_not_found", f"conversation.item.create: previous_item_id '{prev}' "
                                "is not in the conversation", "previous_item_id", ev.get("event_id")) from None
        after = h.bound_items(item.id)
        h.emit(events.ev("conversation.item.added", previous_item_id=after, item=item.wire()))
        h.emit(events.ev("conversation.item.done", previous_item_id=after, item=item.wire()))

    def _item(self, ev: dict, iid: str) -> Item:
        item = self.host.state.find(iid)
        if item is None:
            raise ProtocolError("item_not_found", f"{ev['type']}: item '{iid}' is not in the conversation",
                                "item_id", ev.get("event_id"))
        return item

    async def delete(self, ev: dict) -> None:
        iid = protocol.item_id(ev)
        self._item(ev, iid)
        self.host.state.delete(iid)
        self.host.save()
        self.host.emit(events.ev("conversation.item.deleted", item_id=iid))

    async def retrieve(self, ev: dict) -> None:
        item = self._item(ev, protocol.item_id(ev))
        self.host.emit(events.ev("conversation.item.retrieved", item=item.wire()))

    async def truncate(self, ev: dict) -> None:
        iid, ci, end = protocol.truncate(ev)
        item = self._item(ev, iid)
        resp = self.host.response
        # The item of the response in flight gets its output_audio part only when
        # the response ends, so it is recognised by id: a barge-in truncates it.
        in_flight = resp if resp is not None and resp.item.id == iid else None
        if in_flight is None and (item.role != "assistant"
                                  or not any(c.get("type") == "output_audio" for c in item.content)):
            raise ProtocolError("invalid_value", f"conversation.item.truncate: item '{iid}' is not an "
                                "assistant audio message; only those can be truncated", "item_id",
                                ev.get("event_id"))
        if in_flight is not None:
            in_flight.truncate(end)   # clamped to the audio sent, never rejected for being too large
        else:
            used = float(int(max(0.0, min(float(end), item.audio_ms))))
            truncate_item(item, used)
            self.host.emit(events.ev("conversation.item.truncated", item_id=iid, content_index=ci,
                                     audio_end_ms=int(used)))
        self.host.save()
