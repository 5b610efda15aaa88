#!/usr/bin/env bash
# Installs what the browser and Node tests need, when it can. Tests that still lack
# their tool skip with a printed reason, so this script never fails the run by itself.
set -u
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-setup: installing Debian's chromium and chromium-driver"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
      >/tmp/falweb-apt.log 2>&1 || echo "test-setup: chromium install failed, see /tmp/falweb-apt.log"
  else
    echo "test-setup: chromium missing and not root; browser tests will skip"
  fi
fi

# The PostgreSQL tests start a throwaway cluster with the server's own initdb/pg_ctl.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-setup: installing Debian's postgresql"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
      >/tmp/falweb-apt-pg.log 2>&1 || echo "test-setup: postgresql install failed, see /tmp/falweb-apt-pg.log"
  else
    echo "test-setup: PostgreSQL missing and not root; PostgreSQL tests will skip"
  fi
fi

if [ -f tests/js/package.json ]; then
  if command -v npm >/dev/null 2>&1; then
    if [ ! -d tests/js/node_modules ] || [ tests/js/package-lock.json -nt tests/js/node_modules ]; then
      echo "test-setup: npm ci in tests/js"
      (cd tests/js && npm ci --no-audit --no-fund --loglevel=error) || echo "test-setup: npm ci failed"
      touch tests/js/node_modules 2>/dev/null || true
    fi
  else
    echo "test-setup: npm missing; Node tests will skip"
  fi
fi
# The diffusers engine's tests need torch. Take the CPU wheel only from a local folder
# (never PyPI's multi-GB CUDA build); without one those tests skip with their reason.
# FALWEB_SKIP_DIFFUSERS=1 skips this step.
if [ -z "${FALWEB_SKIP_DIFFUSERS:-}" ] && [ -x .venv/bin/pip ] \
   && ! [ .venv/.diffusers-deps -nt pyproject.toml ]; then
  wheels=${FALWEB_TORCH_WHEELS:-/opt/wheels}
  if .venv/bin/python -c "import torch" >/dev/null 2>&1 \
     || { [ -d "$wheels" ] && .venv/bin/pip install -q --no-index --no-deps \
            --find-links "$wheels" "torch==2.13.0"; }; then
    # torch's own dependencies (filelock, sympy, ...) come with the extra, from the index.
    echo "test-setup: installing the diffusers extra (torch from $wheels)"
    .venv/bin/pip install -q -e '.[diffusers]' && touch .venv/.diffusers-deps \
      || echo "test-setup: diffusers extra failed to install; its tests will skip"
  else
    echo "test-setup: no local CPU torch wheel in $wheels; diffusers engine tests will skip"
  fi
fi
# Hosted fal apps (tests/test_apps*.py) run in their own virtualenv with fal's SDK pinned
# to the version falweb's contract test checks; never in falweb's own .venv.
# FALWEB_SKIP_FALAPPS=1 skips this step.
FAL_SDK_PIN="fal==1.83.0"
if [ -z "${FALWEB_SKIP_FALAPPS:-}" ] && ! [ .venv-falapps/.fal-deps -nt scripts/test-setup.sh ]; then
  echo "test-setup: creating .venv-falapps with $FAL_SDK_PIN and pillow"
  { [ -x .venv-falapps/bin/python ] || python3 -m venv .venv-falapps; } \
    && .venv-falapps/bin/pip install -q "$FAL_SDK_PIN" pillow >/tmp/falweb-falapps.log 2>&1 \
    && touch .venv-falapps/.fal-deps \
    || echo "test-setup: installing fal failed (see /tmp/falweb-falapps.log); hosted-app tests will skip"
fi
exit 0
