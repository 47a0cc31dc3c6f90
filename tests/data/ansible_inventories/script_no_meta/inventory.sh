#!/bin/sh
# an old-style script: no _meta, so it is asked --host for each host
if [ "$1" = "--list" ]; then
  echo '{"web": {"hosts": ["w1", "w2"], "vars": {"tier": "web"}}, "db": ["d1"]}'
elif [ "$1" = "--host" ]; then
  case "$2" in
    w1) echo '{"ansible_host": "198.18.5.1", "n": 1}' ;;
    *) echo '{}' ;;
  esac
fi
