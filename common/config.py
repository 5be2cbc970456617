"""Typed settings for every process: command-line flag, then environment
variable, then default. One dataclass per service; every field's help text
says its default, and the resolved settings are logged at start."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import typing
from typing import Any, Sequence, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def setting(default: Any, help: str, *, env: str | None = None) -> Any:
    """A settings field with its help text (and an optional env name override)."""
    return dataclasses.field(default=default, metadata={"help": help, "env": env})


@dataclasses.dataclass
class ServiceSettings:
    """Settings every gRPC speech service has."""

    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(0, "gRPC port")
    metrics_port: int = setting(0, "port of the Prometheus /metrics side server (0 = off)")
    device: str = setting("cpu", "inference device: cpu or cuda")
    compute_type: str = setting("int8", "compute type (int8, int8_float16, float16, float32)")
    threads: int = setting(2, "CPU threads for inference")
    max_streams: int = setting(8, "streams served at once; further ones get RESOURCE_EXHAUSTED")
    variant: str = setting("stable", "release variant label for metrics: stable or canary")
    otlp_endpoint: str = setting("", "OTLP/gRPC trace endpoint, e.g. http://127.0.0.1:4317 (empty = tracing off)")
    drain_seconds: float = setting(10.0, "grace period for in-flight streams on SIGTERM")
    max_connection_age_s: float = setting(300.0, "a client connection gets GOAWAY after this long, so clients "
                                          "reconnect and spread over replicas; running calls finish (0 = never)")
    log_level: str = setting("INFO", "log level")


def _coerce(raw: str, typ: Any) -> Any:
    if typ is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"not a boolean: {raw!r}")
    if typ in (int, float, str):
        return typ(raw)
    raise TypeError(f"unsupported setting type {typ!r}")


def load_settings(cls: type[T], prefix: str, argv: Sequence[str] | None = None,
                  description: str = "") -> T:
    """Resolve ``cls`` from flags (``--metrics-port``), then ``PREFIX_METRICS_PORT``,
    then the field default. Raises SystemExit with a clear message on bad values."""
    hints = typing.get_type_hints(cls)
    parser = argparse.ArgumentParser(description=description)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    for f in fields:
        env = f.metadata.get("env") or f"{prefix}{f.name.upper()}"
        typ = hints[f.name]
        parser.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, default=None,
            help=f"{f.metadata.get('help', '')} (env {env}; default: {f.default!r})",
            type=str,
        )
    ns = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for f in fields:
        env = f.metadata.get("env") or f"{prefix}{f.name.upper()}"
        raw = getattr(ns, f.name)
        source = "flag"
        if raw is None and env in os.environ:
            raw, source = os.environ[env], f"env {env}"
        if raw is None:
            continue
        try:
            values[f.name] = _coerce(raw, hints[f.name])
        except (TypeError, ValueError) as exc:
            parser.error(f"bad value for {f.name} from {source}: {exc}")
    return cls(**values)


SECRET_NAMES = re.compile(r"(^|_)(api_keys?|secret|password|token)($|_)")
URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@/\s]+@")


def shown(field: str, value: Any) -> Any:
    """A setting as it may be logged: secrets (keys, passwords, tokens) hidden,
    and a URL's password (redis://:pw@host) masked, so logs never hold them."""
    if SECRET_NAMES.search(field) and not field.endswith("_file") and value:
        return "<redacted>"
    if isinstance(value, str):
        return URL_PASSWORD.sub(r"\1***@", value)
    return value


def log_settings(name: str, settings: Any) -> None:
    """Log the resolved settings once at start, one line, so a run is reproducible."""
    pairs = ", ".join(f"{k}={shown(k, v)!r}" for k, v in dataclasses.asdict(settings).items())
    logging.getLogger(name).info("settings: %s", pairs)


def setup_logging(level: str, name: str) -> None:
    """Root logging for a process; every record is redacted (common/redact.py)
    before it is written, so no log holds personal data or credentials."""
    from common import redact

    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s",
    )
    redact.install()
