"""On-call drills against a running stack (`make drill NAME=...`, `python -m
drills NAME`): each injects one fault through the gateway's /admin/faults
for a bounded time while real spoken traffic runs, says where to look and
which alert and runbook apply, and reports the measured time to detect and
to recover. How to run one as a team exercise: docs/drills.md."""
