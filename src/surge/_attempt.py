"""`Attempt`: the record of one attempt of a call, kept on responses and errors.

A leaf module: the wire types (`ChatResponse.attempts`), the errors (`call_attempts`) and the
retry loop all name it, so it imports nothing of theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

from surge._errors import SurgeError

__all__ = ["Attempt"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a call: where it went, how it ended, how long the call then waited.

    Attributes:
        number: 1 for the first attempt, 2 for the first retry, ...
        endpoint: The API root the attempt went to.
        status_code: The HTTP status of the answer (200 on success), or None when no
            answer arrived.
        error: The error that ended the attempt, or None when it succeeded.
        duration: Seconds the attempt took, from its start (rate-limit wait included) to
            its answer or error.
        wait: Seconds the call waited after this attempt before the next one (backoff or
            the server's `Retry-After`); 0.0 for the last attempt or a switch to another
            endpoint.
    """

    number: int
    endpoint: str
    status_code: int | None = None
    error: SurgeError | None = None
    duration: float = 0.0
    wait: float = 0.0

    def __str__(self) -> str:
        what = "ok" if self.error is None else f"{type(self.error).__name__}"
        status = f" {self.status_code}" if self.status_code is not None else ""
        return f"attempt {self.number} to {self.endpoint}:{status} {what}"
