#!/usr/bin/env bash
# Make sure bubblewrap is installed: script and command tasks run in it, and without it they
# are refused (SANDBOX_UNAVAILABLE). Silent when it is already there.
set -u

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

if ! command -v bwrap >/dev/null 2>&1; then
  echo "installing bubblewrap (the sandbox for script and command tasks)"
  if ! { as_root apt-get update -qq && as_root apt-get install -y -qq bubblewrap >/dev/null; }; then
    echo "could not install bubblewrap: install it yourself (apt-get install bubblewrap)," >&2
    echo "or script and command tasks will be refused" >&2
  fi
fi
exit 0
