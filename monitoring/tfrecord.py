"""TFRecord files read without TensorFlow: each record's length and data are checked against their
masked CRC-32C, so a truncated or damaged file is an error that names the file and the record, not
a silent short read. GZIP files (ExampleGen's output) are recognised by their magic bytes."""
import gzip
import struct
from typing import Iterator, List

import google_crc32c

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_GZIP_MAGIC = b"\x1f\x8b"


class RecordError(ValueError):
    """A TFRecord file that cannot be read completely; the message names the file and the record."""


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _open(path: str):
    handle = open(path, "rb")
    if handle.read(2) == _GZIP_MAGIC:
        handle.close()
        return gzip.open(path, "rb")
    handle.seek(0)
    return handle


def read_records(path: str) -> List[bytes]:
    """Every record of one file, in order."""
    return list(iter_records(path))


def iter_records(path: str) -> Iterator[bytes]:
    """The records of one file, streamed (the file is never held whole in memory)."""
    index = 0
    with _open(path) as handle:
        read = handle.read
        try:
            while True:
                header = read(12)
                if not header:
                    return
                if len(header) < 12:
                    raise RecordError(f"{path}: record {index} is cut off in its header; the writer was "
                                      f"interrupted or the file was truncated")
                length, length_crc = _HEADER.unpack(header)
                if _masked_crc(header[:8]) != length_crc:
                    raise RecordError(f"{path}: record {index} has a corrupt length field; the file is damaged")
                body = read(length + 4)
                if len(body) < length + 4:
                    raise RecordError(f"{path}: record {index} is cut off ({length} bytes announced, "
                                      f"{max(len(body) - 4, 0)} there); the writer was interrupted or the file "
                                      f"was truncated")
                record = body[:length]
                if _masked_crc(record) != struct.unpack_from("<I", body, length)[0]:
                    raise RecordError(f"{path}: record {index} fails its checksum; the file is damaged")
                yield record
                index += 1
        except (EOFError, OSError, gzip.BadGzipFile) as error:
            raise RecordError(f"{path}: the GZIP stream is damaged or cut off after record {index} ({error})") \
                from None


def frame(record: bytes) -> bytes:
    """One record as TFRecord stores it: length, its CRC, data, its CRC."""
    header = struct.pack("<Q", len(record))
    return header + struct.pack("<I", _masked_crc(header)) + record + struct.pack("<I", _masked_crc(record))


def write_records(path: str, records) -> None:
    """Uncompressed TFRecord, as tf.io.TFRecordWriter writes it (used for generated data)."""
    with open(path, "wb") as handle:
        for record in records:
            handle.write(frame(record))
