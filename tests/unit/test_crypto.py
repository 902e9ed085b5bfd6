"""The streaming AEAD format: round trips, and every kind of damage is refused with a typed error."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linda_desktop.base.errors import BackupCorrupt, WrongKey
from linda_desktop.session.crypto import DecryptingReader, EncryptingWriter, key_id, read_header

KEY = bytes(range(32))
META = {"id": "20261127T081530Z-3f2a", "created_at": "2026-11-27T08:15:30+00:00", "reason": "manual"}


def seal(data: bytes, key: bytes = KEY, *, chunk_size: int = 64, compress: bool = True, pieces: int = 7) -> bytes:
    raw = io.BytesIO()
    writer = EncryptingWriter(raw, key, META, chunk_size=chunk_size, compress=compress)
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):  # uneven writes, as tarfile does
        writer.write(data[i : i + step])
    writer.close()
    return raw.getvalue()


def unseal(blob: bytes, key: bytes = KEY, block: int = 50) -> bytes:
    reader = DecryptingReader(io.BytesIO(blob), key)
    out = bytearray()
    while True:
        part = reader.read(block)
        if not part:
            break
        out += part
    assert reader.finished
    return bytes(out)


SAMPLE = os.urandom(300) + b"chat text " * 40  # several 64-byte chunks, raw and deflated
SEALED = seal(SAMPLE)


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 128, 1000])
@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_any_size(size: int, compress: bool) -> None:
    data = (os.urandom(size // 2) + b"a" * size)[:size]
    assert unseal(seal(data, compress=compress)) == data


def test_header_is_readable_without_the_key_and_names_the_key() -> None:
    header = read_header(io.BytesIO(SEALED))
    assert header.meta == META
    assert header.key_id == key_id(KEY) != key_id(bytes(32))
    assert header.chunk_size == 64


def test_two_archives_of_the_same_data_differ() -> None:
    # Random salt and nonce prefix per archive: same plaintext, same key, unrelated ciphertexts.
    a, b = seal(SAMPLE), seal(SAMPLE)
    assert a != b and a[-100:] != b[-100:]


def test_wrong_key_is_wrong_key_not_corruption() -> None:
    with pytest.raises(WrongKey) as err:
        unseal(SEALED, key=os.urandom(32))
    assert "different key" in err.value.message and err.value.fix


def test_compressible_chunks_are_deflated_random_ones_stored_raw() -> None:
    text = b"hello how are you, see you tomorrow at the meeting " * 40000  # ~2 MB
    noise = os.urandom(2 * 1024 * 1024)
    assert len(seal(text, chunk_size=1 << 20)) < len(text) / 10
    assert len(seal(noise, chunk_size=1 << 20)) - len(noise) < 1024
    assert unseal(seal(text + noise, chunk_size=1 << 20), block=1 << 20) == text + noise


def _chunk_offsets(blob: bytes) -> list[int]:
    """Offsets of every chunk record (after the header)."""
    pos = len(read_header(io.BytesIO(blob)).raw)
    offsets = []
    while pos < len(blob):
        offsets.append(pos)
        (word,) = struct.unpack(">I", blob[pos : pos + 4])
        pos += 4 + (word & 0x7FFF_FFFF)
    return offsets


def test_cut_at_a_chunk_boundary_is_detected() -> None:
    offsets = _chunk_offsets(SEALED)
    assert len(offsets) >= 4
    for cut in offsets[1:]:
        with pytest.raises(BackupCorrupt, match=r"incomplete|damaged"):
            unseal(SEALED[:cut])


def test_reordered_or_dropped_chunks_and_flipped_final_flag_are_refused() -> None:
    offsets = [*_chunk_offsets(SEALED), len(SEALED)]
    chunks = [SEALED[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    head = SEALED[: offsets[0]]
    swapped = head + chunks[1] + chunks[0] + b"".join(chunks[2:])
    dropped = head + chunks[0] + b"".join(chunks[2:])
    last = bytearray(chunks[-2])
    last[0] |= 0x80  # claim an inner chunk is the final one
    early_end = head + b"".join(chunks[:-2]) + bytes(last)
    for blob in (swapped, dropped, early_end):
        with pytest.raises(BackupCorrupt):
            unseal(blob)


def test_data_after_the_final_chunk_is_refused() -> None:
    with pytest.raises(BackupCorrupt, match="after its end"):
        unseal(SEALED + b"\0")


def test_not_a_backup() -> None:
    with pytest.raises(BackupCorrupt, match="not a Linda Desktop backup"):
        unseal(b"PK\x03\x04 a zip file, not ours" * 4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=len(SEALED) - 1))
def test_any_truncation_is_refused(cut: int) -> None:
    with pytest.raises(BackupCorrupt):
        unseal(SEALED[:cut])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pos=st.integers(min_value=0, max_value=len(SEALED) - 1), mask=st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_is_refused_as_damage(pos: int, mask: int) -> None:
    # Header bytes included: the key id is covered by the header checksum, so a flipped byte
    # never masquerades as "wrong key".
    blob = bytearray(SEALED)
    blob[pos] ^= mask
    with pytest.raises(BackupCorrupt):
        unseal(bytes(blob))


def test_streaming_holds_one_chunk_not_the_file() -> None:
    """50 MB through writer and reader with ~a few MB of Python memory at the peak."""

    total, block = 50 * 1024 * 1024, os.urandom(256 * 1024)
    sink = io.BytesIO()  # the sealed bytes themselves live here; we measure around the writer
    tracemalloc.start()
    try:
        writer = EncryptingWriter(sink, KEY, META)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(total // len(block)):
            writer.write(block)
        writer.close()
        sink.seek(0)
        reader = DecryptingReader(sink, KEY)
        seen = 0
        while True:
            part = reader.read(1 << 20)
            if not part:
                break
            seen += len(part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == total and reader.finished
    sealed_size = len(sink.getvalue())
    # Peak = the BytesIO holding the sealed output + a handful of 1 MiB chunk buffers.
    assert peak - before - sealed_size < 12 * 1024 * 1024, peak
