"""``python -m release.alive FILE MAX_AGE_S``: exit 0 when the control loop's
heartbeat file (``python -m release run --heartbeat-file FILE``) was touched
within MAX_AGE_S seconds, else 1 with the reason. The liveness probe of the
release-controller Deployment and the compose service's healthcheck; stdlib
only, so a probe every minute costs a few milliseconds of CPU."""
from __future__ import annotations

import os
import sys
import time


def age_s(path: str, now: float | None = None) -> float | None:
    """Seconds since ``path`` was last touched, or None when it does not exist."""
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        return None
    return (time.time() if now is None else now) - mtime


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m release.alive HEARTBEAT_FILE MAX_AGE_S", file=sys.stderr)
        return 2
    path, max_age = args[0], float(args[1])
    age = age_s(path)
    if age is None:
        print(f"not alive: no heartbeat file {path} (is `python -m release run "
              f"--heartbeat-file {path}` running?)", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"not alive: last heartbeat {age:.0f} s ago (limit {max_age:g} s): the loop is stuck",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
