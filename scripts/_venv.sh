# Sourced by scripts/run, scripts/test, scripts/check and scripts/bench: create .venv when
# missing and install the project into it (editable, so plugins/ is loaded from the
# checkout) with the extras in $EXTRAS. A stamp per pyproject.toml version remembers which
# extras are installed, so switching between the scripts does not reinstall.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MIDDLEWARED_2FA_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment in $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
wanted="base${EXTRAS:+,$EXTRAS}"
have="$(cat "$stamp" 2>/dev/null || true)"
missing=""
for extra in ${wanted//,/ }; do
  case ",$have," in *",$extra,"*) ;; *) missing="yes" ;; esac
done
if [ -n "$missing" ]; then
  all="$(printf '%s\n' ${have//,/ } ${wanted//,/ } | { grep -v '^base$' || true; } | sort -u | paste -sd, -)"
  echo "installing middlewared-2fa${all:+[$all]} into $VENV" >&2
  # -qq: errors only (not this machine's index notes); PYTHONWARNINGS reaches setuptools'
  # build of the editable install, whose "Editable installation" warning block is noise here.
  "$VENV/bin/python" -m pip install -qq --upgrade pip >&2
  PYTHONWARNINGS=ignore "$VENV/bin/python" -m pip install -qq -e "$ROOT${all:+[$all]}" >&2
  rm -f "$VENV"/.installed-*
  echo "base${all:+,$all}" > "$stamp"
fi
