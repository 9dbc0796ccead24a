"""Shared code of the metering services: settings, logs, errors, the gRPC server, Postgres and Redis.

Nothing here knows a service; services import from here and from the generated protobuf package.
"""
