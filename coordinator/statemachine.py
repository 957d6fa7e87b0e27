"""One pattern for every state that changes: an enum, a table of the moves it allows,
and one function per holder that checks the move here, applies it and emits.

Jobs (status and stage), downloads, a node's model processes and server health each
declare a `Machine`. A move the table does not allow is a bug in the caller: it is
logged at ERROR with the stack and the state stays as it was — never a silent
overwrite. (Jobs refuse such a move to the caller instead: a user's cancel can race
a finish, and the loser gets FAILED_PRECONDITION.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

S = TypeVar("S", bound=StrEnum)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Machine(Generic[S]):
    """`allowed[old]` is every state `old` may move to (itself included where a repeat
    report is normal); a state without moves out is terminal."""

    what: str  # "job", "download", ... (for the log)
    allowed: Mapping[S, frozenset[S]]

    @classmethod
    def of(cls, what: str, allowed: Mapping[S, Iterable[S]]) -> Machine[S]:
        """Builds a machine, checking the table covers every member of the enum."""
        states = {state for state in allowed}
        members = set(type(next(iter(states))))
        if states != members:
            raise ValueError(f"{what}: no moves listed for {sorted(members - states)}")
        return cls(what, {old: frozenset(news) for old, news in allowed.items()})

    @property
    def terminal(self) -> frozenset[S]:
        return frozenset(state for state, moves in self.allowed.items() if not moves)

    def allows(self, old: S, new: S) -> bool:
        return new in self.allowed[old]

    def check(self, subject: str, old: S, new: S, detail: str = "") -> bool:
        """True when `old` -> `new` is allowed; otherwise logs the bug loudly and
        returns False (the caller then leaves the state as it is)."""
        if self.allows(old, new):
            return True
        self.refuse(subject, old, new, detail)
        return False

    def refuse(self, subject: str, old: S, new: S, why: str = "") -> None:
        """Logs a move its caller must not make (a bug) loudly, with the stack."""
        log.error(
            "BUG: %s %s cannot move %s -> %s (%s); it stays %s",
            self.what, subject, old.value, new.value, why or "not in the table", old.value,
            stack_info=True,
        )  # fmt: skip
