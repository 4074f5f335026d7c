"""The gRPC service ``equity_engine.v1.EquityService`` and its Python client.

One module per part: ``config`` (ServerConfig, ServerTls), ``logs`` (JSON logs, access
log), ``status`` (engine errors <-> gRPC statuses with ``google.rpc`` details), ``wire``
(messages <-> tables, summaries, strategies), ``admission`` (solve slots, queue, stop
signals), ``solve_pool`` (worker processes), ``servicer`` (the five RPCs),
``interceptors`` (auth, statuses, access log), ``server`` (EquityServer: build, start,
stop; health; reflection) and ``client``.

Layer: above planning; the command line starts it. Domain work is done by
``engine.pipeline`` and ``engine.planning``; the servicer converts and delegates.
"""
