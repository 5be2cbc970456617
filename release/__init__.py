"""Releases of speech models: a canary pool per service, stepped up on a
schedule, judged on speech metrics at each step, and rolled back by itself
when it hurts users (docs/releases.md).

- state.py: the release record in Redis (weights the gateways route by)
- machine.py: its state machine (transition table, pure)
- samples.py: one turn as the judge sees it (written by the gateway)
- stats.py, judge.py: hard thresholds and the Mann-Whitney comparison (pure)
- store.py: Redis and in-memory stores of records, events and samples
- controller.py: the control loop over an injected clock
- __main__.py: ``python -m release start|status|promote|abort|events|run``

The gateway imports only state.py and samples.py (the wire formats)."""
