"""Serving: an OpenAI-compatible HTTP server over the emulated secure device.

``protocol``: the messages between the server and the device worker process.
"""
