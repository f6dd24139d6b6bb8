"""Serving (contract 2): `makeusrich serve`, a kserve ModelServer over onnxruntime, and a small v2 client.

The server lives in makeusrich.serving.server (it imports kserve); the client, the request checks and the model
loader import neither kserve nor torch, so the dashboard and tools use them without the server's dependencies.
"""
