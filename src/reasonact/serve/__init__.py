"""Serving: a websocket policy server, its Python client, and the browser steering console."""
