"""Facts from RFC 4226 / RFC 6238 and ../shared/cases/bug-cases.md (test data, not code)."""

from __future__ import annotations

#: ASCII "12345678901234567890" in base32 (RFC 6238 Appendix B SHA1 seed).
RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

#: RFC 6238 Appendix B, SHA1, 8 digits, X=30: Unix time -> code.
RFC6238_SHA1_8 = {
    59: "94287082",
    1111111109: "07081804",
    1111111111: "14050471",
    1234567890: "89005924",
    2000000000: "69279037",
    20000000000: "65353130",
}

#: RFC 4226 Appendix D, 6 digits: counter -> HOTP.
RFC4226_HOTP = [
    "755224",
    "287082",
    "359152",
    "969429",
    "338314",
    "254676",
    "287922",
    "162583",
    "399871",
    "520489",
]

#: 6-digit, X=30 codes around t=1234567890 by step offset (bug-cases.md fixture).
AROUND_1234567890 = {-2: "186057", -1: "980357", 0: "005924", 1: "590587", 2: "240500", 3: "992085"}

#: Interval 60 (C11): time -> 8-digit code.
RFC_INTERVAL_60_8 = {59: "84755224", 1111111109: "19360094", 1234567890: "55713351"}
