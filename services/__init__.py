"""The speech services and the gateway, one package each."""
