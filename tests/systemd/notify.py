"""systemd-notify: payrelayd's side of Type=notify, as systemd would see it.

payrelayd runs with NOTIFY_SOCKET pointing at a datagram socket of ours and
WATCHDOG_USEC=1 s, the way systemd starts it. Checked:
- no READY=1 while Redis does not answer, though the listener is up and
  WATCHDOG=1 keeps coming (the loop runs);
- READY=1 once Redis answers;
- SIGHUP: RELOADING=1 with MONOTONIC_USEC from CLOCK_MONOTONIC, then READY=1;
  also when the new file is refused;
- SIGTERM: STOPPING=1, then exit 0.
Usage: notify.py PAYRELAYD
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

WATCHDOG_USEC = 1000000


class Notify:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.msgs = []          # (monotonic time, {key: value}), in arrival order

    def pump(self, until):
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.msgs.append((time.monotonic(), fields))

    def wait(self, key, value="1", timeout=10.0, after=0):
        """The index of the first message from index `after` on with key=value."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.msgs)):
                if self.msgs[i][1].get(key) == value:
                    return i
            if time.monotonic() >= deadline:
                raise AssertionError("no %s=%s within %.0f s; got %r"
                                     % (key, value, timeout, [m for _, m in self.msgs[after:]]))
            self.pump(min(deadline, time.monotonic() + 0.2))

    def count(self, key, value="1", after=0):
        return sum(1 for _, m in self.msgs[after:] if m.get(key) == value)


def config_text(port, admin_port, redis_port, broken=False):
    return """[daemon]
listen = 127.0.0.1:%d
shutdown_timeout = 5
[admin]
listen = 127.0.0.1:%d
token = %s
[redis]
url = redis://127.0.0.1:%d/0
prefix = sdnotify:
[channel:shop]
family = %s
merchant_id = 1001
key = 89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i
""" % (port, admin_port, harness.ADMIN_TOKEN, redis_port, "nosuchfamily" if broken else "epay")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else harness.locate_binary()
    work = tempfile.mkdtemp(prefix="payrelay-sdn-")
    notify = Notify(os.path.join(work, "notify.sock"))
    port, admin_port, redis_port = harness.free_port(), harness.free_port(), harness.free_port()
    conf = os.path.join(work, "payrelayd.conf")
    with open(conf, "w") as f:
        f.write(config_text(port, admin_port, redis_port))

    env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC=str(WATCHDOG_USEC))
    env.pop("WATCHDOG_PID", None)
    log = os.path.join(work, "payrelayd.log")
    with open(log, "ab") as logf:
        proc = subprocess.Popen([binary, "-c", conf], stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT, env=env)
    redis = None

    def log_tail():
        with open(log, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-30:])

    try:
        # Redis is not there yet: listening, watchdog alive, not ready.
        deadline = time.monotonic() + 10
        while not harness.port_open(port, 0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("payrelayd is not listening:\n" + log_tail())
            notify.pump(time.monotonic() + 0.05)
        start = len(notify.msgs)
        notify.pump(time.monotonic() + 2.0)
        if notify.count("READY", after=0):
            raise AssertionError("READY=1 before Redis answered: %r" % notify.msgs)
        pings = notify.count("WATCHDOG", after=start)
        if pings < 2:
            raise AssertionError("%d WATCHDOG=1 in 2 s with WATCHDOG_USEC=%d"
                                 % (pings, WATCHDOG_USEC))
        print("ok: listening, not READY while Redis is down; %d keep-alives in 2 s" % pings)

        redis = harness.RedisServer(work, port=redis_port).start()
        t0 = time.monotonic()
        ready = notify.wait("READY", timeout=15)
        print("ok: READY=1 %.1f s after Redis came up (%s)"
              % (notify.msgs[ready][0] - t0, notify.msgs[ready][1].get("STATUS", "")))

        for broken in (False, True):
            with open(conf, "w") as f:
                f.write(config_text(port, admin_port, redis_port, broken))
            after = len(notify.msgs)
            now_usec = time.monotonic() * 1e6
            proc.send_signal(signal.SIGHUP)
            i = notify.wait("RELOADING", after=after)
            mono = int(notify.msgs[i][1].get("MONOTONIC_USEC", "0"))
            if abs(mono - now_usec) > 5e6:
                raise AssertionError("MONOTONIC_USEC=%d, CLOCK_MONOTONIC is %d"
                                     % (mono, now_usec))
            notify.wait("READY", after=i + 1)
            if proc.poll() is not None:
                raise AssertionError("payrelayd exited on reload:\n" + log_tail())
            if broken and "reload refused" not in log_tail():
                raise AssertionError("the broken file was not refused:\n" + log_tail())
            print("ok: SIGHUP (%s file): RELOADING=1 MONOTONIC_USEC, then READY=1"
                  % ("refused" if broken else "valid"))

        after = len(notify.msgs)
        proc.send_signal(signal.SIGTERM)
        notify.wait("STOPPING", after=after)
        rc = proc.wait(timeout=15)
        if rc != 0:
            raise AssertionError("exit status %d after SIGTERM:\n%s" % (rc, log_tail()))
        print("ok: SIGTERM: STOPPING=1, exit 0")
    except AssertionError as e:
        print("FAIL: %s" % e)
        print(log_tail())
        return 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if redis:
            redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
