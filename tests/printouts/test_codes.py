from __future__ import annotations

import math
import re

import pytest

from printouts.codes import (
    ALPHABET,
    CODE_LENGTH,
    MODULUS,
    RANDOM_BITS,
    RANDOM_SYMBOLS,
    CodeError,
    check_character,
    compact_code,
    is_valid_code,
    new_referral_code,
    normalize_code,
)

CANONICAL = re.compile(rf"^[{ALPHABET}]{{5}}-[{ALPHABET}]{{5}}-[{ALPHABET}]{{5}}$")


def test_layout_and_alphabet() -> None:
    assert MODULUS == 31 and all(MODULUS % d for d in range(2, MODULUS))  # prime
    assert not set("ILOUZ") & set(ALPHABET)
    assert len(set(ALPHABET)) == MODULUS
    assert RANDOM_SYMBOLS * math.log2(MODULUS) >= RANDOM_BITS >= 60
    for _ in range(200):
        code = new_referral_code()
        assert CANONICAL.match(code), code
        assert normalize_code(code) == code
        assert check_character(code.replace("-", "")[:RANDOM_SYMBOLS]) == code[-1]


def _codes(n: int) -> list[str]:
    return [new_referral_code().replace("-", "") for _ in range(n)]


def test_every_single_substitution_is_detected() -> None:
    for compact in _codes(1000):
        for pos in range(CODE_LENGTH):
            for sym in ALPHABET:
                if sym == compact[pos]:
                    continue
                typo = compact[:pos] + sym + compact[pos + 1 :]
                assert not is_valid_code(typo), (compact, pos, sym)


def test_every_adjacent_swap_is_detected() -> None:
    for compact in _codes(2000):
        for pos in range(CODE_LENGTH - 1):
            a, b = compact[pos], compact[pos + 1]
            if a == b:
                continue
            swapped = compact[:pos] + b + a + compact[pos + 2 :]
            assert not is_valid_code(swapped), (compact, pos)


def test_check_promise_holds_for_all_codes_algebraically() -> None:
    # A substitution changes the weighted sum by w*d, a swap by +-(a-b): never 0 mod 31.
    weights = range(1, CODE_LENGTH + 1)
    for w in weights:
        for d in range(1, MODULUS):
            assert (w * d) % MODULUS != 0
    for a in range(MODULUS):
        for b in range(MODULUS):
            if a != b:
                for w in range(1, CODE_LENGTH):
                    before = w * a + (w + 1) * b
                    after = w * b + (w + 1) * a
                    assert (before - after) % MODULUS != 0


def _kit_codes(count: int) -> list[str]:
    return [new_referral_code() for _ in range(count)]


@pytest.mark.slow  # ten processes drawing a million codes: about 12 s on two cores
def test_unique_across_a_million_codes_from_ten_kits() -> None:
    # Ten kits are ten processes forked from one parent with no coordination: the case
    # in which a seeded generator would repeat itself across kits.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(10, mp_context=multiprocessing.get_context("fork")) as pool:
        kits = list(pool.map(_kit_codes, [100_000] * 10))
    assert all(len(set(codes)) == 100_000 for codes in kits)
    assert len(set().union(*kits)) == 1_000_000
    # Each symbol is equally likely in each random position (no bias in the draw).
    first = [0] * MODULUS
    for codes in kits:
        for code in codes:
            first[ALPHABET.index(code[0])] += 1
    expected = 1_000_000 / MODULUS
    assert all(abs(n - expected) < 6 * expected**0.5 for n in first)


def test_importing_codes_stays_cheap() -> None:
    # The store and the UI import codes at start-up; the printouts' heavy libraries load
    # only when a slip is rendered, printed or scanned.
    import subprocess
    import sys

    probe = (
        "import sys, printouts.codes, printouts.payload, printouts.qr, printouts.render, "
        "printouts.scan, printouts.printing\n"
        "heavy = {'reportlab', 'qrcode', 'PIL', 'pyzbar', 'pypdfium2'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "typed",
    [
        "{c}",
        "{lower}",
        "{compact}",
        " {lower_compact} ",
        "{c5} {m5} {e5}",
        "{c5}--{m5} - {e5}",
    ],
)
def test_forgiving_input(typed: str) -> None:
    code = new_referral_code()
    compact = code.replace("-", "")
    text = typed.format(
        c=code,
        lower=code.lower(),
        compact=compact,
        lower_compact=compact.lower(),
        c5=compact[:5],
        m5=compact[5:10],
        e5=compact[10:],
    )
    assert normalize_code(text) == code
    assert compact_code(text) == compact


def test_look_alikes_are_mapped() -> None:
    # Build a code whose body has 0, 1, V and 2 so their look-alikes can be typed.
    body = "01V201V201V201"
    code = body + check_character(body)
    canonical = normalize_code(code)
    typed = "oIUzOLuZ0iv2" + code[12:]
    assert normalize_code(typed) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no code"),
        ("ABCD-EFGH", "wrong length"),
        ("ABCDE-FGHJK-MNPQRS", "wrong length"),
        ("ABCDE-FGH!K-MNPQR", "not a referral code character '!'"),
    ],
)
def test_clear_errors(text: str, message: str) -> None:
    with pytest.raises(CodeError, match=re.escape(message)):
        normalize_code(text)


def test_mistyped_message() -> None:
    code = new_referral_code()
    wrong = code[:3] + ("0" if code[3] != "0" else "1") + code[4:]
    with pytest.raises(CodeError, match="check character does not match"):
        normalize_code(wrong)
    with pytest.raises(CodeError, match="check character does not match"):
        normalize_code(wrong.lower())


def test_extract_code_from_scanner_input() -> None:
    from printouts.codes import extract_code

    code = new_referral_code()
    compact = code.replace("-", "")
    assert extract_code(f"https://triage.example.org/r/{compact}?s=ABCDEFGHJK") == code
    assert extract_code(f"HTTPS://TRIAGE.EXAMPLE.ORG/R/{compact}?S=ABCDEFGHJK") == code
    assert extract_code(f"https://triage.example.org/r/{compact}?s=ABCDEFGHJK&l=es") == code
    assert extract_code(f"  {code.lower()} ") == code
    with pytest.raises(CodeError, match="not a referral code character"):
        extract_code("https://example.com/menu")
