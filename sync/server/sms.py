"""The SMS gateway adapter: a generic HTTP webhook.

One POST of ``{"to": E.164 phone, "text": ..., "sender": ...}`` with the token as a Bearer
header and an explicit timeout. 2xx is sent; another 4xx is a permanent refusal; 5xx,
429, a timeout or a broken connection is worth another try later. The error kept says only
the status or the kind of failure, never the phone or the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import requests

Result = Literal["sent", "failed", "retry"]
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SEPARATORS = re.compile(r"[\s().\-]")


def e164(phone: str | None) -> str | None:
    """The number in E.164 (``+447700900123``), or None when it is not one: a number
    without its country code cannot be sent to safely."""
    if not phone:
        return None
    compact = _SEPARATORS.sub("", phone)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    return compact if _E164.fullmatch(compact) else None


@dataclass(frozen=True)
class Outcome:
    result: Result
    error: str = ""  # "HTTP 503", "timeout": no personal data


@dataclass(frozen=True)
class Gateway:
    url: str
    token: str = ""
    sender: str = ""
    timeout: float = 10.0

    def send(self, to: str, text: str) -> Outcome:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = requests.post(
                self.url,
                json={"to": to, "text": text, "sender": self.sender},
                headers=headers,
                timeout=(min(self.timeout, 5.0), self.timeout),
                allow_redirects=False,
            )
        except requests.Timeout:
            return Outcome("retry", "timeout")
        except requests.ConnectionError:
            return Outcome("retry", "connection error")
        except requests.RequestException as exc:
            return Outcome("failed", type(exc).__name__)
        return classify(response.status_code)


def classify(status: int) -> Outcome:
    """What a gateway's HTTP status means for the reminder."""
    if 200 <= status < 300:
        return Outcome("sent")
    if status == 429 or status >= 500:
        return Outcome("retry", f"HTTP {status}")
    return Outcome("failed", f"HTTP {status}")
