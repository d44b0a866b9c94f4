# Sourced by scripts/demo and scripts/test: find a Python >= 3.11 before pip runs (pip on an older
# Python spins for minutes before it gives up on requires-python), or stop with one line.
# $PYTHON, when set, is the only candidate; otherwise python3, then python3.13, python3.12, python3.11.

_py_version() {  # prints X.Y.Z; succeeds only for >= 3.11
  "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3]); sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

pick_python() {  # prints the interpreter to use
  local candidates first="" py version
  if [ -n "${PYTHON:-}" ]; then candidates=("$PYTHON"); else candidates=(python3 python3.13 python3.12 python3.11); fi
  for py in "${candidates[@]}"; do
    command -v "$py" >/dev/null 2>&1 || continue
    if version=$(_py_version "$py"); then echo "$py"; return 0; fi
    [ -n "$first" ] || first="$py is ${version:-not a working Python}"
  done
  if [ -n "${PYTHON:-}" ]; then
    echo "$SCRIPT: needs Python >= 3.11; PYTHON=${first:-$PYTHON (not found)}" >&2
  else
    echo "$SCRIPT: needs Python >= 3.11; ${first:-no python3 on PATH}, and no python3.13, python3.12 or python3.11 on PATH (or set PYTHON=/path/to/python3.11)" >&2
  fi
  return 1
}

ensure_venv() {  # creates .venv with a suitable Python, or checks the one that is there
  local py version
  if [ -x .venv/bin/python ]; then
    if ! version=$(_py_version .venv/bin/python); then
      echo "$SCRIPT: .venv has Python ${version:-that does not run}, needs >= 3.11; remove it (rm -rf .venv) and run again" >&2
      return 1
    fi
    return 0
  fi
  py=$(pick_python) || return 1
  "$py" -m venv .venv
}
