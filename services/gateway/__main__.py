"""`python -m services.gateway`: resolve GatewaySettings (flag → env GATEWAY_* →
default), then serve the Realtime API with uvicorn on 127.0.0.1:8000."""
from __future__ import annotations

import uvicorn

from common import metrics
from common.config import load_settings, log_settings, setup_logging
from common.tracing import setup_tracing
from services.gateway import log_context
from services.gateway import metrics as gateway_metrics
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "main"]


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(GatewaySettings, "GATEWAY_", argv,
                             "Realtime API gateway over the local speech services")
    setup_logging(settings.log_level, "gateway")
    log_context.install()
    log_settings("gateway", settings)
    # "pipeline" labels the gateway's series; it loads no model of its own.
    metrics.init("gateway", "pipeline", settings.variant, serves_model=False)
    gateway_metrics.init_series()
    setup_tracing("gateway", settings.otlp_endpoint, settings.variant)
    try:
        app = create_app(settings)
    except ValueError as exc:   # unsafe access settings: say so and do not start
        raise SystemExit(f"gateway: {exc}") from None
    if bool(settings.ssl_certfile) != bool(settings.ssl_keyfile):
        raise SystemExit("gateway: TLS needs both GATEWAY_SSL_CERTFILE and GATEWAY_SSL_KEYFILE")
    # Messages up to 4x the limit still reach us and get a clear error event;
    # beyond that the server closes the socket (1009) before buffering more.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                ws_max_size=settings.max_message_bytes * 4, ws_ping_interval=20, ws_ping_timeout=20,
                timeout_graceful_shutdown=10, ssl_certfile=settings.ssl_certfile or None,
                ssl_keyfile=settings.ssl_keyfile or None,
                # uvicorn's loggers (access log and WebSocket lines, with their query
                # strings) go through our root handler and its redaction filter.
                log_config=None)


if __name__ == "__main__":
    main()
