"""The gRPC service: configuration, wire conversion, admission, workers, servicer, server,
and the Python client.

Layer: above planning; the command line starts it. Domain work is done by
``engine.pipeline`` and ``engine.planning``; the servicer converts and delegates.
"""
