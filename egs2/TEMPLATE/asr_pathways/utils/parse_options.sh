#!/usr/bin/env bash
# Kaldi-style option parsing: "--foo-bar VALUE" or "--foo_bar VALUE" sets $foo_bar when
# the caller already defined foo_bar.  Source it after setting the defaults:
#   . utils/parse_options.sh
# Positional arguments are left in "$@".
while true; do
  [ -z "${1:-}" ] && break
  case "$1" in
    --help|-h)
      if [ -n "${help_message:-}" ]; then printf '%s\n' "$help_message"; fi
      exit 0 ;;
    --*=*) echo "$0: options are '--name value', not '--name=value': $1" >&2; exit 1 ;;
    --*)
      name=$(echo "$1" | sed s/^--// | sed s/-/_/g)
      if ! declare -p "$name" >/dev/null 2>&1; then
        echo "$0: invalid option $1" >&2; exit 1
      fi
      if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" >&2; exit 1; fi
      printf -v "$name" '%s' "$2"
      shift 2 ;;
    *) break ;;
  esac
done
