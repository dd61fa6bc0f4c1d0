"""The plaintext of every page of a SQLCipher 4 file and of its WAL, free pages included:
what a byte search must see to prove removed data is gone (a logical export would show
only live rows).

SQLCipher 4 defaults: 4096-byte pages, each ending in a reserve of 80 bytes (a 16-byte IV,
then the HMAC); the page before the reserve is AES-256-CBC with the raw key. Page 1 begins
with the file's 16-byte salt instead of the SQLite header.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PAGE = 4096
RESERVE = 80
IV = 16
WAL_HEADER = 32
FRAME_HEADER = 24


def _page(key: bytes, page: bytes, first: bool) -> bytes:
    start = 16 if first else 0
    iv = page[PAGE - RESERVE : PAGE - RESERVE + IV]
    body = page[start : PAGE - RESERVE]
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(body) + decryptor.finalize()


def decrypted_pages(path: Path, key: bytes) -> bytes:
    """Every page of the database file, decrypted, in file order."""
    data = path.read_bytes() if path.exists() else b""
    pages = [data[i : i + PAGE] for i in range(0, len(data) - PAGE + 1, PAGE)]
    return b"".join(_page(key, page, first=i == 0) for i, page in enumerate(pages))


def decrypted_wal(path: Path, key: bytes) -> bytes:
    """Every frame of a WAL file, decrypted (page 1 frames keep their salt prefix)."""
    data = path.read_bytes() if path.exists() else b""
    out = []
    at = WAL_HEADER
    while at + FRAME_HEADER + PAGE <= len(data):
        page_no = int.from_bytes(data[at : at + 4], "big")
        frame = data[at + FRAME_HEADER : at + FRAME_HEADER + PAGE]
        out.append(_page(key, frame, first=page_no == 1))
        at += FRAME_HEADER + PAGE
    return b"".join(out)


def decrypted_store(db_path: Path, key: bytes) -> bytes:
    """The database file and its WAL, decrypted page by page."""
    wal = db_path.with_name(db_path.name + "-wal")
    return decrypted_pages(db_path, key) + decrypted_wal(wal, key)
