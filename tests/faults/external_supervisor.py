"""A supervisor whose exchange outlives it (tests only): ``supervisor.py start`` in the foreground, minus
the paper simulator it would start (and take down with it).

``python -m tests.faults.external_supervisor CONFIG``: the simulator is already running (the test started
it); the config names it (``exchange.rest_url``) and the account (``exchange.account_address``); the
account's throwaway key comes in ``HIP3_FAULTS_KEY`` and goes to the executor only. Lets a test kill the
supervisor with ``kill -9`` while the exchange keeps the positions, and check what a new supervisor
finds: the persisted latch and the positions resynced from the exchange.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from hip3.config import load_config
from hip3.ops import ctl as cli
from hip3.runtime.bus import prepare_run_dir
from hip3.runtime.launchers import ProcessLauncher
from hip3.runtime.logs import setup_logging
from hip3.runtime.secrets import SigningKey
from hip3.runtime.supervisor import Supervisor

ENV_KEY = "HIP3_FAULTS_KEY"


def main(config_path: str) -> int:
    cfg = load_config(config_path)
    run_dir = cfg.run_path
    prepare_run_dir(run_dir)
    lock = cli._acquire_lock(run_dir)
    key = SigningKey(os.environ.pop(ENV_KEY))
    log = setup_logging("supervisor", run_dir, cfg.logging.level, cfg.logging.stderr)
    sup = Supervisor(cfg, ProcessLauncher(Path(config_path), run_dir, key), log)

    def stop(_signum: int, _frame: object) -> None:
        sup.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not sup.stopping:
            sup.step()
    finally:
        sup.shutdown()
        sup.close()
        lock.close()
        (run_dir / cli.LOCK_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
