"""Low-memory killer policy: which app dies when reclaim cannot meet demand."""

from __future__ import annotations

import numpy as np

from flexserve.nwos.apps import App


def choose_victim(apps: list[App], resident_pages: np.ndarray) -> App | None:
    """Highest ``oom_score_adj`` first, then the largest resident set; None if nobody helps.

    ``resident_pages[app_id]`` is the app's count of resident anonymous pages.
    """
    def rss(app: App) -> int:
        return int(resident_pages[app.app_id]) if app.app_id < resident_pages.size else 0

    candidates = [a for a in apps if a.killable and rss(a) > 0]
    if not candidates:
        return None
    return max(candidates, key=lambda a: (a.oom_score_adj, rss(a), -a.app_id))
