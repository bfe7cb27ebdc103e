"""`kedge-agent run`: the board daemon, one module per job.

core.py         the lifecycle: start the jobs, signals, reload, watchdog, shutdown
link.py         the broker link: connect, subscribe, online/offline, reconnect
reporting.py    a health report every interval into the spool; spool → broker on PUBACK
checking.py     the preflight every check_interval and on demand; its typed facts
commanding.py   remote commands: what each action does on this board
status_file.py  <state_dir>/daemon.json for `kedge-agent status`
troubles.py     a failing job's error logged once per distinct message
"""

from agent.daemon.core import Daemon
from agent.daemon.status_file import status_path

__all__ = ["Daemon", "status_path"]
