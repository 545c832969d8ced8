"""Apps of the normal world: owners of anonymous memory and page cache, with kill priority."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from flexserve.errors import ConfigError


class AppStatus(Enum):
    RUNNING = "running"
    KILLED = "killed"
    EXITED = "exited"


@dataclass
class App:
    """A process. Its resident pages live in the page map under ``app_id``."""

    app_id: int
    name: str
    oom_score_adj: int  # -1000 (never kill) .. 1000 (kill first), as in Linux
    status: AppStatus = AppStatus.RUNNING
    swapped_pages: int = 0

    @property
    def alive(self) -> bool:
        return self.status == AppStatus.RUNNING

    @property
    def killable(self) -> bool:
        return self.alive and self.oom_score_adj > -1000


class AppTable:
    """Registry of apps; ids come from an owned counter starting at ``first_id``."""

    def __init__(self, first_id: int) -> None:
        self._next_id = first_id
        self._apps: dict[int, App] = {}

    def spawn(self, name: str, oom_score_adj: int = 0) -> App:
        if not -1000 <= oom_score_adj <= 1000:
            raise ConfigError("oom_score_adj must be within -1000..1000")
        app = App(self._next_id, name, oom_score_adj)
        self._apps[app.app_id] = app
        self._next_id += 1
        return app

    def get(self, app_id: int) -> App:
        return self._apps[app_id]

    def __contains__(self, app_id: int) -> bool:
        return app_id in self._apps

    def running(self) -> list[App]:
        return [a for a in self._apps.values() if a.alive]

    def all(self) -> list[App]:
        return list(self._apps.values())
