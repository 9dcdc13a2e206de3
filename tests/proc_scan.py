"""What the kernel says is still running: the tests' own view of /proc, independent of the sandbox's code."""
from __future__ import annotations

import os


def live_pids_of_uid(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real uid is ``uid``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                text = f.read()
        except OSError:
            continue
        uids = next((line.split()[1:] for line in text.splitlines() if line.startswith("Uid:")), [])
        if uids and int(uids[0]) == uid and "\nState:\tZ" not in text:
            found.append(int(name))
    return found
