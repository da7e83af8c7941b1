#!/usr/bin/env python3
"""A minimal hand-written LND HTLC interceptor that resumes everything: what LND
users write today with grpcio (the baseline of `cargo bench --bench load`).

    interceptor.py --stubs DIR --rpcserver HOST:PORT --tlscert tls.cert --macaroon admin.macaroon

DIR holds router_pb2*.py / lightning_pb2*.py generated from proto/ with grpcio-tools
(the load tool does that at run time). Runs until killed.
"""
import argparse
import queue
import sys

import grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stubs", required=True)
    ap.add_argument("--rpcserver", required=True)
    ap.add_argument("--tlscert", required=True)
    ap.add_argument("--macaroon", required=True)
    args = ap.parse_args()
    sys.path.insert(0, args.stubs)
    import router_pb2 as router
    import router_pb2_grpc as routerrpc

    with open(args.tlscert, "rb") as f:
        cert = f.read()
    with open(args.macaroon, "rb") as f:
        macaroon = f.read().hex()
    channel = grpc.secure_channel(args.rpcserver, grpc.ssl_channel_credentials(cert))
    stub = routerrpc.RouterStub(channel)

    answers = queue.SimpleQueue()

    def responses():
        while True:
            yield answers.get()

    for req in stub.HtlcInterceptor(responses(), metadata=[("macaroon", macaroon)]):
        answers.put(
            router.ForwardHtlcInterceptResponse(
                incoming_circuit_key=req.incoming_circuit_key,
                action=router.RESUME,
            )
        )


if __name__ == "__main__":
    main()
