"""``python -m checks.ledger_worker``: one worker process of the SQLite ledger check
(see checks.ledger._chunks_in_processes)."""

import sys

from checks.ledger import worker_main

if __name__ == "__main__":
    worker_main(sys.stdin, sys.stdout)
