"""A response that calls a function (Realtime GA shape): the LLM's call
becomes a ``function_call`` item, the response's only output, and the
client runs the function, adds a ``function_call_output`` item with the
same ``call_id`` and asks for a response, which answers from it.

Events, in order, when the call arrives (held with a preemptive run's
output until its release, like every other event of the response):
response.output_item.added (the item in_progress, no arguments yet),
conversation.item.added, response.function_call_arguments.delta (the
whole arguments: the LLM service sends a call whole, ~20 tokens),
response.function_call_arguments.done (call_id, name, arguments),
response.output_item.done, conversation.item.done. response.done (output:
the function_call item) follows when the response completes (response.py).
Text-only and audio responses alike: a call has neither text nor audio."""
from __future__ import annotations

from typing import TYPE_CHECKING

from services.gateway import events
from services.gateway.backends.types import ToolCall
from services.gateway.protocol import new_id
from services.gateway.session import Item

if TYPE_CHECKING:
    from services.gateway.response import Response


def take(resp: "Response", delta: "str | ToolCall") -> bool:
    """Whether the LLM's ``delta`` is its call: the response becomes that
    call, announced now or, for a held preemptive run, at its release."""
    if not isinstance(delta, ToolCall):
        return False
    resp.call = delta
    resp.hold.do(lambda: announce(resp, delta))
    return True


def announce(resp: "Response", call: ToolCall) -> None:
    """The call as a function_call item, with its events (see module doc)."""
    conv = resp.conv
    # The response's assistant item was never announced (tools defer it): the call takes its id.
    item = Item(id=resp.item.id, type="function_call", status="in_progress", call_id=new_id("call"),
                name=call.name, arguments="")
    resp.item = item
    prev = conv.add_item(item) if resp.in_conversation else None
    conv.emit(events.ev("response.output_item.added", response_id=resp.id, output_index=0, item=item.wire()))
    if resp.in_conversation:
        conv.emit(events.ev("conversation.item.added", previous_item_id=prev, item=item.wire()))
    ids = {"response_id": resp.id, "item_id": item.id, "output_index": 0, "call_id": item.call_id}
    conv.emit(events.ev("response.function_call_arguments.delta", delta=call.arguments, **ids))
    item.arguments, item.status = call.arguments, "completed"
    conv.emit(events.ev("response.function_call_arguments.done", name=call.name, arguments=call.arguments,
                        **ids))
    conv.emit(events.ev("response.output_item.done", response_id=resp.id, output_index=0, item=item.wire()))
    if resp.in_conversation:
        conv.emit(events.ev("conversation.item.done", item=item.wire()))
        conv.save()
