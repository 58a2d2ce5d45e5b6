#!/usr/bin/env bash
# Installs what is missing, builds, starts a local redis-server when none
# answers on 127.0.0.1:6379 (its data in .redis/ of this checkout) and runs
# payrelayd in the foreground on conf/payrelayd.conf. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
bash scripts/build.sh build --buildtype=debugoptimized

redis_pid=
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  mkdir -p .redis
  echo "demo: starting redis-server on 127.0.0.1:6379, data in $PWD/.redis" >&2
  redis-server --bind 127.0.0.1 --port 6379 --dir "$PWD/.redis" \
    --appendonly yes --appendfsync always --save '' \
    --logfile "$PWD/.redis/redis.log" --daemonize no &
  redis_pid=$!
  trap '[ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null; wait 2>/dev/null || true' EXIT
  for _ in $(seq 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

cat >&2 <<'TXT'
demo: payrelayd listens on 127.0.0.1:8787. Try the signed example of
      ../shared/vectors/epay.json from another terminal:
  curl 'http://127.0.0.1:8787/notify/shop-epay?pid=1001&trade_no=20160806151343349021&out_trade_no=20160806151343349&type=alipay&name=VIP%E4%BC%9A%E5%91%98&money=1.00&trade_status=TRADE_SUCCESS&sign=3ec3bda0f65fd24c5320e7ab770b2547&sign_type=MD5'
  redis-cli xrange payrelay:events - +
TXT
build/src/payrelayd -c conf/payrelayd.conf
