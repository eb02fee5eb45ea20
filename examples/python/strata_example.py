"""Produce and consume through a Strata broker from Python, with stubs generated from
proto/strata/v1/strata.proto by grpcio-tools: proof that the gRPC contract works outside Rust.

Records travel as Kafka RecordBatch v2 bytes (the broker stores exactly what it receives), so
this file also shows how to build and read a batch: the header, zig-zag varint records, and the
CRC-32C over everything after the CRC field.

    python strata_example.py --broker 127.0.0.1:7092 --topic python-example --records 1000

Against a broker with TLS and authentication (docs/security.md), give the same options as the
strata CLI (or its STRATA_* environment variables):

    --tls-ca ca.crt [--tls-cert alice.crt --tls-key alice.key] [--user bob --password-file bob.pw]
"""

import argparse
import base64
import os
import struct
import sys
import time

import grpc

import strata_pb2 as pb
import strata_pb2_grpc as rpc

# ------------------------------------------------------------------ CRC-32C (Castagnoli)

_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ------------------------------------------------------------------ varints


def zigzag_varint(value: int) -> bytes:
    v = (value << 1) ^ (value >> 63)
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def read_varint(buf: bytes, pos: int):
    shift = 0
    v = 0
    while True:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    return (v >> 1) ^ -(v & 1), pos


# ------------------------------------------------------------------ RecordBatch v2

HEADER = struct.Struct(">qiiBIhiqqqhii")  # 61 bytes


def encode_batch(records, base_timestamp: int) -> bytes:
    """One uncompressed batch of (key, value) pairs; offsets are assigned by the broker."""
    body = bytearray()
    for i, (key, value) in enumerate(records):
        rec = bytearray()
        rec += b"\x00"  # attributes
        rec += zigzag_varint(0)  # timestamp delta
        rec += zigzag_varint(i)  # offset delta
        for field in (key, value):
            if field is None:
                rec += zigzag_varint(-1)
            else:
                rec += zigzag_varint(len(field)) + field
        rec += zigzag_varint(0)  # no headers
        body += zigzag_varint(len(rec)) + rec
    count = len(records)
    # attributes .. records count: the part the CRC covers, with the records after it.
    tail = struct.pack(
        ">hiqqqhii", 0, count - 1, base_timestamp, base_timestamp, -1, -1, -1, count
    ) + bytes(body)
    batch_length = 4 + 1 + 4 + len(tail)  # leader epoch, magic, crc, then the tail
    head = struct.pack(">qiiB", 0, batch_length, -1, 2)
    return head + struct.pack(">I", crc32c(tail)) + tail


def decode_batches(data: bytes):
    """Yields (offset, key, value) of every record in concatenated batches, checking CRCs."""
    pos = 0
    while pos + 12 <= len(data):
        base_offset, batch_length = struct.unpack_from(">qi", data, pos)
        end = pos + 12 + batch_length
        (_, _, _, magic, crc, attributes, _, _, _, _, _, _, count) = HEADER.unpack_from(data, pos)
        if magic != 2:
            raise ValueError(f"batch at offset {base_offset}: magic {magic}, expected 2")
        if crc32c(data[pos + 21 : end]) != crc:
            raise ValueError(f"batch at offset {base_offset}: CRC-32C mismatch")
        if attributes & 0x07:
            raise ValueError("compressed batches are not decoded by this example")
        p = pos + HEADER.size
        for _ in range(count):
            length, p = read_varint(data, p)
            rec_end = p + length
            p += 1  # attributes
            _, p = read_varint(data, p)  # timestamp delta
            offset_delta, p = read_varint(data, p)
            fields = []
            for _ in range(2):
                n, p = read_varint(data, p)
                if n < 0:
                    fields.append(None)
                else:
                    fields.append(data[p : p + n])
                    p += n
            yield base_offset + offset_delta, fields[0], fields[1]
            p = rec_end
        pos = end


# ------------------------------------------------------------------ connecting


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def connect(args):
    """A channel (TLS when --tls-ca is given) and the metadata every call carries."""
    if (args.tls_cert is None) != (args.tls_key is None):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return None, None
    if (args.user is None) != (args.password_file is None):
        print("error: --user needs --password-file (and the other way round)", file=sys.stderr)
        return None, None
    metadata = []
    if args.user is not None:
        if args.tls_ca is None:
            print("error: a password is sent only over TLS: give --tls-ca", file=sys.stderr)
            return None, None
        password = _read(args.password_file).decode().splitlines()[0]
        token = base64.b64encode(f"{args.user}:{password}".encode()).decode()
        metadata.append(("authorization", f"Basic {token}"))
    if args.tls_ca is None:
        return grpc.insecure_channel(args.broker), metadata
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(args.tls_ca),
        private_key=_read(args.tls_key) if args.tls_key else None,
        certificate_chain=_read(args.tls_cert) if args.tls_cert else None,
    )
    return grpc.secure_channel(args.broker, credentials), metadata


class _with_metadata:
    """A stub whose calls all carry `metadata`."""

    def __init__(self, stub, metadata):
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name):
        call = getattr(self._stub, name)
        return lambda request, **kw: call(request, metadata=self._metadata, **kw)


# ------------------------------------------------------------------ the example


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="127.0.0.1:7092")
    parser.add_argument("--topic", default="python-example")
    parser.add_argument("--records", type=int, default=1000)
    env = os.environ.get
    parser.add_argument("--tls-ca", default=env("STRATA_TLS_CA"),
                        help="CA certificate (PEM) that signed the broker's: connect with TLS")
    parser.add_argument("--tls-cert", default=env("STRATA_TLS_CERT"), help="client certificate (mTLS)")
    parser.add_argument("--tls-key", default=env("STRATA_TLS_KEY"), help="its private key")
    parser.add_argument("--user", default=env("STRATA_USER"))
    parser.add_argument("--password-file", default=env("STRATA_PASSWORD_FILE"))
    args = parser.parse_args()

    channel, metadata = connect(args)
    if channel is None:
        return 2
    admin = rpc.AdminStub(channel)
    log = rpc.LogStub(channel)
    # Every call carries the credentials (authorization: Basic base64(user:password)).
    admin = _with_metadata(admin, metadata)
    log = _with_metadata(log, metadata)

    try:
        admin.CreateTopic(
            pb.CreateTopicRequest(name=args.topic, partitions=1, replication_factor=1),
            timeout=10,
        )
        print(f"created topic {args.topic}")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            print(f"error: {e.details()}", file=sys.stderr)
            return 1

    sent = [(f"key-{i}".encode(), f"python record {i}".encode()) for i in range(args.records)]
    batch = encode_batch(sent, int(time.time() * 1000))
    answer = log.Produce(
        pb.ProduceRequest(topic=args.topic, partition=0, acks=pb.ACKS_ALL, records=batch),
        timeout=30,
    )
    first, last = answer.base_offset, answer.last_offset
    print(f"produced {len(sent)} records at offsets {first}..{last}")

    got = []
    offset = first
    while len(got) < len(sent):
        fetched = log.Fetch(
            pb.FetchRequest(topic=args.topic, partition=0, offset=offset, max_wait_ms=1000,
                            min_bytes=1, max_bytes=1 << 20),
            timeout=30,
        )
        for o, key, value in decode_batches(fetched.records):
            if o >= offset and o <= last:
                got.append((key, value))
                offset = o + 1
    if got != sent:
        print("error: the records read back differ from those produced", file=sys.stderr)
        return 1
    print(f"consumed {len(got)} records back from offset {first}: identical")

    # A bad request gets a status with a sentence, as from any client.
    try:
        log.Fetch(pb.FetchRequest(topic="no-such-topic", partition=0, offset=0), timeout=10)
    except grpc.RpcError as e:
        print(f"unknown topic: {e.code().name}: {e.details()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
