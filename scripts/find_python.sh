#!/usr/bin/env bash
# Prints the path of a Python interpreter of the given minor version (e.g. 3.10), or fails with advice.
# Looks at pyenv's versions first (pyenv's shims fail for versions that are not active), then PATH.
set -u
want="$1"
candidates=()
if command -v pyenv >/dev/null 2>&1; then
  for p in "$(pyenv root)"/versions/"$want".*/bin/python"$want"; do candidates+=("$p"); done
fi
for p in "$(command -v "python$want" 2>/dev/null)" /usr/bin/python"$want" /usr/local/bin/python"$want"; do
  [ -n "$p" ] && candidates+=("$p")
done
for p in "${candidates[@]}"; do
  if [ -x "$p" ] && "$p" -c "import sys; sys.exit(f'{sys.version_info[0]}.{sys.version_info[1]}' != '$want')" 2>/dev/null; then
    echo "$p"
    exit 0
  fi
done
echo "Python $want was not found. Install it (for example 'pyenv install $want') and run make again." >&2
exit 1
