"""A scriptable fake payment gateway for the reconciliation tests (SPEC 2.x
"Polling", 6). Python 3 standard library only.

One FakeGateway is one merchant account at one gateway of one family, on
127.0.0.1:<free port>; its `api_base` goes into the channel's config. It
answers the family's order query (and, for epay, the `act=orders` sweep):

    epay      GET  /api.php?act=order&pid=..&key=..&out_trade_no=..
              GET  /api.php?act=orders&pid=..&key=..&limit=50&page=N&offset=..
    gatepay   GET  /api/order/check?appkey=..&out_order_id=..&sign=..
    payindex  POST /Pay_Trade_query.html   pay_memberid, pay_orderid, pay_md5sign

and checks the merchant's credentials the way the real platforms do (a wrong
pid/key, appkey/sign or memberid/sign gets the platform's error answer).

It also creates payments as the gateways' documents describe (SPEC 10.1,
../shared/gateways/), checking every signature with its own code:

    epay      POST /mapi.php                 JSON code/msg/trade_no/payurl|qrcode|urlscheme
              GET|POST /submit.php           the payer's page (HTML)
    gatepay   POST /api/anypay/create        price
              POST /api/stablepay/create     product_id (self.products)
              POST /api/grouppay/create      fields "id:count,..."
    payindex  POST /Pay_Index.html           type=json: status/msg/payUrl

A created payment becomes an unpaid GwOrder holding what was sent
(notify_url, return_url, device, ...); `notify(out_trade_no)` then pays it
and sends the gateway's signed notify to its notify_url, and `send_return`
sends the payer's browser to its return_url. `create_script`
sets the answers of the next creates (create_ok, create_fail, create_echo,
create_qrcode, create_urlscheme, garbage, http500, slow:SECONDS); `require_device`
makes mapi.php refuse any other device (seed 003 wants "jump").

What it knows is a set of orders (`add_order`), each unpaid, paid or (epay)
refunded, with the gateway's trade id and amount. What it answers to a query
for one out_trade_no is, in this order: the next action of that order's
script (`script`), else the gateway-wide default (`set_default`), else
"state" (the truth about the order, or "not found"). Actions:

    state          the order as it is (notfound when there is none)
    unpaid         the order, shown as not paid
    paid           the order, shown as paid (needs add_order's trade id/amount)
    refunded       epay: status 2
    notfound       the family's "no such order" answer
    error          the family's error JSON (system busy)
    weird          JSON of an unexpected shape: ["unexpected", 1]
    garbage        HTTP 200 with a body that is not JSON
    http500        HTTP 500 with an HTML body
    badsign        payindex: the state answer with a wrong `sign`
                   (other families: the same as state)
    hang           no answer for `hang_s` seconds (gives up early when the
                   client goes away), then the state answer
    slow:SECONDS   the state answer after SECONDS
    msg:TEXT       the family's "no such order" answer with TEXT as its msg
                   (a platform that echoes what it was sent)
    paidmsg:TEXT   the order shown as paid, TEXT in an unsigned field of the
                   answer (epay `buyer`)
    huge:BYTES     HTTP 200, Content-Length BYTES, a JSON-ish body of that
                   size sent in 64 KiB writes, 1 ms apart per MiB
    stream:BYTES   the same without Content-Length (the end is the close)

A query's `sent` counts the body bytes the gateway could write.

Every query is recorded (Query: wall and monotonic time, method, path,
params, out_trade_no, action, whether the credentials were right, when and
how it ended) so tests can count polls and check rates.
"""

import json
import re
import select
import socket
import time
import urllib.parse

import harness as h

FAMILIES = ("epay", "gatepay", "payindex")
# epay api.php acts of the merchant's own account (refund, merchant info,
# settlements: SPEC 10.3), served by _epay_client.
EPAY_CLIENT_ACTS = ("refund", "query", "settle")
ACTIONS = ("state", "unpaid", "paid", "refunded", "notfound", "error", "weird", "garbage",
           "http500", "badsign", "hang")


def php_params(qs):
    """{name: value} of a query string / form body as PHP decodes it
    ('+' is a space, %XX a byte, a repeated name keeps its last value)."""
    out = {}
    for k, v in urllib.parse.parse_qsl(qs, keep_blank_values=True, encoding="utf-8",
                                       errors="replace"):
        out[k] = v
    return out


def yuan_fen(s):
    """Fen of a decimal string of yuan ("1", "0.5", "1.00"); ValueError else."""
    if not re.fullmatch(r"(0|[1-9][0-9]*)(\.[0-9]{1,2})?", s or ""):
        raise ValueError("not an amount: %r" % s)
    whole, _, frac = s.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def fen_of(amount):
    whole, _, frac = amount.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def gatepay_query_sign(appkey, out_order_id, appsecret):
    return h.md5hex(h.md5hex(appkey + out_order_id) + appsecret)


def payindex_query_sign(memberid, orderid, key):
    return h.payindex_sign({"pay_memberid": memberid, "pay_orderid": orderid}, key)


class GwOrder:
    """An order as the gateway knows it."""

    def __init__(self, out_trade_no, amount="1.00", trade_id=None, state="unpaid",
                 name="VIP会员", type="alipay", param="", true_amount=None,
                 addtime=None, endtime=None, buyer=""):
        self.out_trade_no = out_trade_no
        self.amount = amount
        self.trade_id = trade_id or ("GW" + h.md5hex(out_trade_no)[:16])
        self.state = state            # unpaid | paid | refunded
        self.name = name
        self.type = type
        self.param = param
        self.true_amount = true_amount if true_amount is not None else amount
        now = time.strftime("%Y-%m-%d %H:%M:%S")
        self.addtime = addtime or now
        self.endtime = endtime or now
        self.buyer = buyer


class Query:
    """One request the gateway got."""

    def __init__(self, method, path, params, t, mono):
        self.method = method
        self.path = path            # without the query string
        self.params = params        # {name: value}, query string and body merged
        self.time = t
        self.mono = mono
        self.kind = None            # order | orders | other
        self.out_trade_no = None
        self.action = None
        self.auth_ok = None
        self.status = None          # HTTP status answered (None: none)
        self.outcome = "pending"    # answered | client-gone | write-failed
        self.end_mono = None
        self.sent = 0               # body bytes written

    def __repr__(self):
        return "<%s %s %s otn=%s action=%s auth=%s status=%s %s %.2f>" % (
            self.method, self.path, self.kind, self.out_trade_no, self.action, self.auth_ok,
            self.status, self.outcome, self.mono)


class FakeGateway(h.ServedOnLoopback):
    def __init__(self, family, merchant_id, key, hang_s=30.0, epay_status_as_string=False):
        if family not in FAMILIES:
            raise ValueError("unknown family %r" % family)
        self.family = family
        self.merchant_id = merchant_id
        self.key = key
        self.hang_s = hang_s
        self.epay_status_as_string = epay_status_as_string
        h.ServedOnLoopback.__init__(self)
        self.orders = {}          # out_trade_no -> GwOrder, in insertion order
        # creating payments (SPEC 10.1)
        self.products = {"8": "9.90", "7": "1.50"}  # gatepay product_id -> price
        self.require_device = None  # epay: mapi.php refuses another device
        self.payindex_ststus = False  # payindex: the document's own "ststus" spelling
        self._create_script = []
        self.listing = None       # sweep: [out_trade_no] newest first (None: all, newest first)
        self._scripts = {}        # out_trade_no -> [action]
        self._default = None
        self.requests = []
        self.client_init()
        self.active = 0
        self.max_active = 0
        gw = self

        class Handler(h.TrackedHandler):
            owner = gw
            server_version = "nginx"
            sys_version = ""

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                path, _, qs = self.path.partition("?")
                params = php_params(qs)
                ctype = (self.headers.get("Content-Type") or "").lower()
                if body and (not ctype or "x-www-form-urlencoded" in ctype):
                    params.update(php_params(body.decode("utf-8", "replace")))
                q = Query(self.command, path, params, time.time(), time.monotonic())
                with gw.cond:
                    gw.requests.append(q)
                    gw.active += 1
                    gw.max_active = max(gw.max_active, gw.active)
                    gw.cond.notify_all()
                try:
                    gw._serve(self, q)
                finally:
                    with gw.cond:
                        gw.active -= 1
                        q.end_mono = time.monotonic()
                        gw.cond.notify_all()

            do_GET = do_POST = _handle

        self.serve(Handler)
        self.api_base = "http://%s:%d" % (h.HOST, self.port)

    # --- what it knows and does -------------------------------------------

    def add_order(self, out_trade_no, **kw):
        o = GwOrder(out_trade_no, **kw)
        with self.lock:
            self.orders[out_trade_no] = o
        return o

    def set_state(self, out_trade_no, state):
        with self.lock:
            self.orders[out_trade_no].state = state

    def script(self, out_trade_no, actions):
        """The next answers for `out_trade_no`, one per query; then the default."""
        with self.lock:
            self._scripts[out_trade_no] = list(actions)

    def set_default(self, action):
        """The answer for every query with no script left (None: state)."""
        with self.lock:
            self._default = action

    def _next_action(self, out_trade_no):  # with the lock held
        s = self._scripts.get(out_trade_no)
        if s:
            return s.pop(0)
        return self._default or "state"

    # --- the protocol -------------------------------------------------------

    def _serve(self, handler, q):
        fam = self.family
        p = q.params
        create = self._create_route(q.path)
        if create is not None:
            return create(handler, q)
        if fam == "epay":
            if q.path != "/api.php":
                return self._send(handler, q, 404, b"<html>404 Not Found</html>", "text/html")
            act = p.get("act", "")
            if act in EPAY_CLIENT_ACTS:
                return self._epay_client(handler, q, act)
            q.kind = {"order": "order", "orders": "orders"}.get(act, "other")
            q.out_trade_no = p.get("out_trade_no") if q.kind == "order" else None
            q.auth_ok = p.get("pid") == self.merchant_id and p.get("key") == self.key
            if q.kind == "other":
                return self._json(handler, q, {"code": -5, "msg": "No Act!"})
            if not q.auth_ok:
                return self._json(handler, q, {"code": -2, "msg": "KEY校验失败"})
            if q.kind == "orders":
                return self._epay_orders(handler, q)
        elif fam == "gatepay":
            if q.path != "/api/order/check":
                return self._send(handler, q, 404, b"<html>404 Not Found</html>", "text/html")
            q.kind = "order"
            q.out_trade_no = p.get("out_order_id")
            want = gatepay_query_sign(self.merchant_id, p.get("out_order_id", ""), self.key)
            q.auth_ok = p.get("appkey") == self.merchant_id and p.get("sign") == want
            if not q.auth_ok:
                return self._json(handler, q, {"code": 101, "msg": "sign error"})
        else:
            if q.path != "/Pay_Trade_query.html":
                return self._send(handler, q, 404, b"<html>404 Not Found</html>", "text/html")
            q.kind = "order"
            q.out_trade_no = p.get("pay_orderid")
            want = payindex_query_sign(p.get("pay_memberid", ""), p.get("pay_orderid", ""),
                                       self.key)
            q.auth_ok = (q.method == "POST" and p.get("pay_memberid") == self.merchant_id
                         and p.get("pay_md5sign") == want)
            if not q.auth_ok:
                return self._json(handler, q, {"status": "error", "msg": "签名错误"})
        with self.lock:
            action = self._next_action(q.out_trade_no)
            q.action = action
        self._act(handler, q, action)

    def _act(self, handler, q, action):
        if action == "hang" or action.startswith("slow:"):
            wait = self.hang_s if action == "hang" else float(action.split(":", 1)[1])
            if self._client_gone(handler, wait):
                with self.cond:
                    q.outcome = "client-gone"
                    self.cond.notify_all()
                handler.close_connection = True
                return
            action = "state"
        if action.startswith("huge:") or action.startswith("stream:"):
            kind, _, n = action.partition(":")
            return self._huge(handler, q, int(n), kind == "huge")
        if action.startswith("msg:"):
            ans = self._notfound_answer()
            ans["msg"] = action[len("msg:"):]
            return self._json(handler, q, ans)
        if action.startswith("paidmsg:"):
            with self.lock:
                o = self.orders.get(q.out_trade_no)
            d = self._order_answer(o, "paid")
            if self.family == "epay":
                d["buyer"] = action[len("paidmsg:"):]
            return self._json(handler, q, d)
        if action == "garbage":
            return self._send(handler, q, 200,
                              b"<br />\n<b>Warning</b>: mysqli_connect(): (HY000/2002) in "
                              b"<b>/www/api.php</b> on line <b>12</b><br />\n{\"code\":1",
                              "text/html; charset=utf-8")
        if action == "http500":
            return self._send(handler, q, 500, b"<html><body><h1>500 Internal Server Error"
                              b"</h1></body></html>", "text/html")
        if action == "weird":
            return self._json(handler, q, ["unexpected", 1])
        if action == "error":
            return self._json(handler, q, self._error_answer())
        with self.lock:
            o = self.orders.get(q.out_trade_no)
            state = o.state if o is not None else None
        if action in ("state", "badsign"):
            shown = state
        elif action == "notfound":
            shown = None
        elif action in ("unpaid", "paid", "refunded"):
            shown = action if o is not None else None
        else:
            raise ValueError("unknown gateway action %r" % action)
        if shown is None:
            return self._json(handler, q, self._notfound_answer())
        return self._json(handler, q, self._order_answer(o, shown, badsign=(action == "badsign")))

    def _error_answer(self):
        if self.family == "epay":
            return {"code": -5, "msg": "系统繁忙，请稍后再试"}
        if self.family == "gatepay":
            return {"code": 500, "msg": "系统繁忙"}
        return {"status": "error", "msg": "系统繁忙"}

    def _notfound_answer(self):
        if self.family == "epay":
            return {"code": -1, "msg": "订单号不存在"}
        if self.family == "gatepay":
            return {"code": 102, "msg": "订单不存在"}
        return {"status": "error", "msg": "不存在的交易订单号"}

    def epay_object(self, o, state):
        status = {"unpaid": 0, "paid": 1, "refunded": 2}[state]
        return {"trade_no": o.trade_id, "out_trade_no": o.out_trade_no, "type": o.type,
                "pid": self.merchant_id, "name": o.name, "money": o.amount,
                "status": str(status) if self.epay_status_as_string else status,
                "param": o.param, "buyer": o.buyer, "addtime": o.addtime,
                "endtime": o.endtime if state != "unpaid" else ""}

    def _order_answer(self, o, state, badsign=False):
        if self.family == "epay":
            d = {"code": 1, "msg": "succ"}
            d.update(self.epay_object(o, state))
            return d
        if self.family == "gatepay":
            return {"code": 100, "data": {
                "order_id": o.trade_id, "order_name": o.name, "order_price": o.amount,
                "order_type": o.type, "order_status": "paid" if state == "paid" else "unpaid"}}
        paid = state == "paid"
        d = {"memberid": self.merchant_id, "orderid": o.out_trade_no, "amount": o.amount,
             "true_amount": o.true_amount if paid else o.amount,
             "time_end": o.endtime if paid else "", "transaction_id": o.trade_id,
             "returncode": "00", "trade_state": "SUCCESS" if paid else "NOTPAY"}
        d["sign"] = h.payindex_sign(d, self.key + ("x" if badsign else ""))
        return d

    def _epay_orders(self, handler, q):
        p = q.params
        try:
            limit = int(p.get("limit") or 20)
            if "page" in p:
                start = (int(p["page"]) - 1) * limit
            else:
                start = int(p.get("offset") or 0)
        except ValueError:
            return self._json(handler, q, {"code": -4, "msg": "参数错误"})
        limit = max(1, min(limit, 50))
        start = max(0, start)
        with self.lock:
            names = (list(self.listing) if self.listing is not None
                     else list(reversed(list(self.orders))))
            objs = [self.epay_object(self.orders[n], self.orders[n].state)
                    for n in names[start:start + limit]]
            default = self._default
        q.action = default if default in ("hang", "garbage", "http500", "error") else "list"
        if q.action != "list":
            return self._act(handler, q, q.action)
        return self._json(handler, q, {"code": 1, "msg": "succ", "data": objs})

    # --- epay act=refund / query / settle (SPEC 10.3) --------------------------
    #
    # As ../shared/gateways/epay-000.txt, -003 and -004 describe them: refund
    # is a POST of pid key trade_no|out_trade_no money (trade_no wins when
    # both come) answered {"code": 1, "msg": "退款成功"}; query and settle are
    # GETs of pid and key. The 000 platform says most of its channels refund
    # only the whole order amount (`refund_whole_only`); 003 refunds from the
    # day's unsettled money (`balance`). `client_action` scripts the next
    # answers of these acts: "error" (code -1, `client_msg`), "echo" (an
    # error whose msg quotes the key it got), "garbage", "http500", "hang".

    def client_init(self):
        self.refunds = []             # (trade_id, money) of each refund made
        self.refund_whole_only = False
        self.balance = "1234.56"
        self.settlements = [
            {"id": "1001", "type": "1", "account": "admin@pay.com", "username": "张三",
             "money": "100.00", "realmoney": "99.50", "addtime": "2026-11-20 10:00:00",
             "endtime": "2026-11-21 10:00:00", "status": "1"},
            {"id": "1002", "type": "1", "account": "admin@pay.com", "username": "张三",
             "money": "20.5", "realmoney": "20.40", "addtime": "2026-11-22 10:00:00",
             "endtime": "", "status": "0"},
        ]
        self.client_actions = []      # the next answers of refund/query/settle
        self.client_msg = "余额不足，请充值后再退款"
        self.echo_key_in_data = True  # query answers echo the key, as documented

    def _epay_client(self, handler, q, act):
        p = q.params
        q.kind = act
        q.out_trade_no = p.get("out_trade_no")
        q.auth_ok = p.get("pid") == self.merchant_id and p.get("key") == self.key
        if not q.auth_ok:
            return self._json(handler, q, {"code": -2, "msg": "KEY校验失败"})
        if act == "refund" and q.method != "POST":
            return self._json(handler, q, {"code": -1, "msg": "请使用POST方式提交"})
        with self.lock:
            action = self.client_actions.pop(0) if self.client_actions else "state"
        q.action = action
        if action == "error":
            return self._json(handler, q, {"code": -1, "msg": self.client_msg})
        if action == "echo":
            return self._json(handler, q, {"code": -3, "msg": "商户密钥%s无权限" % p.get("key")})
        if action in ("garbage", "http500", "hang") or action.startswith("slow:"):
            return self._act(handler, q, action)
        if act == "query":
            d = {"code": 1, "pid": int(self.merchant_id) if self.merchant_id.isdigit()
                 else self.merchant_id, "active": 1, "money": self.balance, "type": 1,
                 "account": "admin@pay.com", "username": "张三", "orders": 30,
                 "order_today": 15, "order_lastday": 15}
            if self.echo_key_in_data:
                d["key"] = self.key
            return self._json(handler, q, d)
        if act == "settle":
            with self.lock:
                data = [dict(r) for r in self.settlements]
            return self._json(handler, q, {"code": 1, "msg": "查询结算记录成功！", "data": data})
        return self._json(handler, q, self._epay_refund(p))

    def _epay_refund(self, p):
        tn, otn = p.get("trade_no", ""), p.get("out_trade_no", "")
        if not tn and not otn:
            return {"code": -1, "msg": "订单号不能为空"}
        try:
            money = yuan_fen(p.get("money", ""))
        except ValueError:
            money = None
        if money is None or money <= 0:
            return {"code": -1, "msg": "退款金额不正确"}
        with self.lock:
            if tn:
                o = next((o for o in self.orders.values() if o.trade_id == tn), None)
            else:
                o = self.orders.get(otn)
            if o is None:
                return {"code": -1, "msg": "当前订单不存在！"}
            if o.state == "unpaid":
                return {"code": -1, "msg": "当前订单未完成支付"}
            paid = yuan_fen(o.true_amount)
            done = sum(m for t, m in self.refunds if t == o.trade_id)
            if self.refund_whole_only and money != paid:
                return {"code": -1, "msg": "退款金额必须与订单金额一致"}
            if done + money > paid:
                return {"code": -1, "msg": "退款金额不能大于订单金额"}
            self.refunds.append((o.trade_id, money))
            if done + money == paid:
                o.state = "refunded"
        return {"code": 1, "msg": "退款成功"}

    # --- creating payments (SPEC 10.1) -----------------------------------------

    def create_script(self, actions):
        """The answers of the next creates, one each; then create_ok."""
        with self.lock:
            self._create_script = list(actions)

    def _next_create(self):
        """The next create's action; "slow:S" answers create_ok after S seconds."""
        with self.lock:
            action = self._create_script.pop(0) if self._create_script else "create_ok"
        if action.startswith("slow:"):
            time.sleep(float(action[len("slow:"):]))
            action = "create_ok"
        return action

    def _create_route(self, path):
        routes = {
            "epay": {"/mapi.php": self._epay_mapi, "/submit.php": self._epay_submit},
            "gatepay": {"/api/anypay/create": self._gatepay_create,
                        "/api/stablepay/create": self._gatepay_create,
                        "/api/grouppay/create": self._gatepay_create},
            "payindex": {"/Pay_Index.html": self._payindex_create},
        }
        return routes[self.family].get(path)

    def creates(self, out_trade_no=None):
        return self.queries(out_trade_no, kind="create")

    def _created(self, q, out_trade_no, amount, **kw):
        """The unpaid order a create makes (an existing one is kept: a
        re-create of an unpaid order gets the same trade id)."""
        with self.lock:
            o = self.orders.get(out_trade_no)
            if o is None:
                o = GwOrder(out_trade_no, amount=amount)
                self.orders[out_trade_no] = o
            for k, v in kw.items():
                setattr(o, k, v)
        return o

    def _create_common(self, handler, q, action):
        """Answers the scripted non-ok actions; True when it answered."""
        if action == "garbage":
            self._send(handler, q, 200, b"<br />\n<b>Fatal error</b>: Uncaught PDOException",
                       "text/html")
            return True
        if action == "http500":
            self._send(handler, q, 500, b"<html><h1>500 Internal Server Error</h1></html>",
                       "text/html")
            return True
        return False

    def _epay_missing(self, p, names):
        for n in names:
            if p.get(n, "") == "":
                return n
        return None

    def _epay_create_check(self, q, names):
        """None when the request is signed and whole, else the error answer."""
        p = q.params
        q.out_trade_no = p.get("out_trade_no")
        missing = self._epay_missing(p, names)
        if missing:
            q.auth_ok = False
            return {"code": -1, "msg": "缺少参数" + missing}
        if p.get("pid") != self.merchant_id:
            q.auth_ok = False
            return {"code": -1, "msg": "商户不存在"}
        if p.get("sign_type", "MD5") != "MD5" or p.get("sign") != h.epay_md5_sign(p, self.key):
            q.auth_ok = False
            return {"code": -1, "msg": "签名校验失败"}
        q.auth_ok = True
        return None

    def _epay_mapi(self, handler, q):
        q.kind = "create"
        q.out_trade_no = q.params.get("out_trade_no")
        if q.method != "POST":
            return self._json(handler, q, {"code": -1, "msg": "请使用POST提交"})
        action = q.action = self._next_create()
        if self._create_common(handler, q, action):
            return
        err = self._epay_create_check(q, ("pid", "type", "out_trade_no", "notify_url", "name",
                                          "money", "clientip", "sign"))
        if err:
            return self._json(handler, q, err)
        p = q.params
        if self.require_device is not None and p.get("device") != self.require_device:
            return self._json(handler, q, {"code": -1,
                                           "msg": "device参数错误,必须传入" + self.require_device})
        if action == "create_fail":
            return self._json(handler, q, {"code": -1, "msg": "支付通道已关闭"})
        if action == "create_echo":
            return self._json(handler, q, {"code": -1, "msg": "KEY " + self.key + " 已过期"})
        o = self._created(q, p["out_trade_no"], p["money"], name=p["name"], type=p["type"],
                          param=p.get("param", ""), notify_url=p["notify_url"],
                          return_url=p.get("return_url", ""), device=p.get("device"),
                          clientip=p.get("clientip"))
        ans = {"code": 1, "msg": "succ", "trade_no": o.trade_id}
        if action == "create_qrcode":
            ans["qrcode"] = "weixin://wxpay/bizpayurl?pr=" + o.trade_id
        elif action == "create_urlscheme":
            ans["urlscheme"] = "weixin://dl/business/?ticket=" + o.trade_id
        else:
            ans["payurl"] = self.api_base + "/pay/" + o.trade_id + "/"
        return self._json(handler, q, ans)

    def _epay_submit(self, handler, q):
        """The payer's browser on submit.php: an HTML cashier page."""
        q.kind = "create"
        q.out_trade_no = q.params.get("out_trade_no")
        action = q.action = self._next_create()
        if self._create_common(handler, q, action):
            return
        err = self._epay_create_check(q, ("pid", "out_trade_no", "notify_url", "return_url",
                                          "name", "money", "sign"))
        if err:
            return self._send(handler, q, 200, ("<html><body>%s</body></html>" % err["msg"])
                              .encode("utf-8"), "text/html; charset=utf-8")
        p = q.params
        o = self._created(q, p["out_trade_no"], p["money"], name=p["name"],
                          type=p.get("type", "alipay"), param=p.get("param", ""),
                          notify_url=p["notify_url"], return_url=p["return_url"])
        return self._send(handler, q, 200, ("<html><body>收银台 %s %s</body></html>" % (
            o.trade_id, p["money"])).encode("utf-8"), "text/html; charset=utf-8")

    def _gatepay_create(self, handler, q):
        q.kind = "create"
        p = q.params
        variant = {"/api/anypay/create": "price", "/api/stablepay/create": "product_id",
                   "/api/grouppay/create": "fields"}[q.path]
        q.out_trade_no = p.get("out_order_id")
        action = q.action = self._next_create()
        if self._create_common(handler, q, action):
            return

        def err(code, msg):
            return self._json(handler, q, {"code": code, "msg": msg, "time": str(int(time.time())),
                                           "data": []})
        q.auth_ok = False
        if not p.get("appkey"):
            return err(101, "秘钥必须")
        if p["appkey"] != self.merchant_id:
            return err(102, "无效的秘钥")
        if not p.get("sign"):
            return err(103, "签名必须")
        x = p.get(variant, "")
        want = h.md5hex(h.md5hex(p["appkey"] + x + p.get("type", "") + p.get("out_order_id", "")
                                 + p.get("custom", "")) + self.key)
        if p["sign"] != want:
            return err(104, "无效的签名")
        q.auth_ok = True
        if not x or not p.get("type") or not p.get("out_order_id"):
            return err(105, "参数缺失")
        if p["type"] not in ("wechat", "alipay"):
            return err(202 if variant == "price" else 201, "无效的支付方式")
        if action == "create_fail":
            return err(203 if variant == "price" else 202, "当前支付方式已关闭")
        if action == "create_echo":
            return err(199, "未知错误 appsecret=" + self.key)
        if variant == "price":
            if not re.match(r"^\d+(\.\d{1,2})?$", x) or float(x) <= 0:
                return err(201, "价格无效")
            amount = x
        elif variant == "product_id":
            if x not in self.products:
                return err(205, "产品不可获得")
            amount = self.products[x]
        else:
            total = 0
            try:
                for part in x.split(","):
                    pid, _, n = part.partition(":")
                    total += fen_of(self.products[pid]) * int(n)
            except (KeyError, ValueError):
                return err(204, "组合内无有效库存商品")
            amount = "%d.%02d" % (total // 100, total % 100)
        o = self._created(q, p["out_order_id"], amount, type=p["type"],
                          param=p.get("custom", ""), notify_url=p.get("notify_url", ""),
                          return_url=p.get("return_url", ""), product=x if variant != "price"
                          else None)
        o.trade_id = o.trade_id if not o.trade_id.startswith("GW") else str(
            500 + len(self.orders))
        pay_url = "%s/pay/api?id=%s&type=%s" % (self.api_base, o.trade_id, p["type"])
        return self._json(handler, q, {
            "code": 100, "msg": "请求成功", "time": str(int(time.time())),
            "data": {"pay_url": pay_url,
                     "qrcode_url": self.api_base + "/qrcode/build?size=130&text="
                     + urllib.parse.quote(pay_url, safe=""),
                     "qrcode_body": "",
                     "params": {k: p.get(k, "") for k in ("appkey", variant, "type",
                                                          "out_order_id", "custom", "sign")}}})

    def _payindex_create(self, handler, q):
        q.kind = "create"
        p = q.params
        q.out_trade_no = p.get("pay_orderid")
        action = q.action = self._next_create()
        if self._create_common(handler, q, action):
            return

        def err(msg):
            return self._json(handler, q, {"status": "error", "msg": msg, "data": []})
        signed = ("pay_memberid", "pay_orderid", "pay_applydate", "pay_bankcode",
                  "pay_notifyurl", "pay_callbackurl", "pay_amount")
        q.auth_ok = False
        if q.method != "POST":
            return err("请使用POST提交")
        for n in signed + ("pay_md5sign", "pay_productname"):
            if not p.get(n):
                return err("缺少参数" + n)
        if p["pay_memberid"] != self.merchant_id:
            return err("商户号不存在")
        want = h.payindex_sign({k: p[k] for k in signed}, self.key)
        if p["pay_md5sign"] != want:
            return err("签名错误")
        if not re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", p["pay_applydate"]):
            return err("提交时间格式错误")
        q.auth_ok = True
        if action == "create_fail":
            return err("通道维护中")
        if action == "create_echo":
            return err("密钥 " + self.key + " 无效")
        o = self._created(q, p["pay_orderid"], p["pay_amount"], name=p["pay_productname"],
                          type=p["pay_bankcode"], param=p.get("pay_attach", ""),
                          notify_url=p["pay_notifyurl"], return_url=p["pay_callbackurl"],
                          applydate=p["pay_applydate"])
        if p.get("type") != "json":
            return self._send(handler, q, 200, b"<html><body>cashier</body></html>", "text/html")
        ans = {"msg": "下单成功", "pay_amount": p["pay_amount"], "pay_orderid": o.out_trade_no,
               "payUrl": "%s/index/index/cashier.html?osn=%s" % (self.api_base, o.trade_id)}
        ans["ststus" if self.payindex_ststus else "status"] = "1"
        return self._json(handler, q, ans)

    def notify_params(self, out_trade_no):
        """The signed notify the gateway sends once the order is paid."""
        with self.lock:
            o = self.orders[out_trade_no]
        if self.family == "epay":
            d = {"pid": self.merchant_id, "trade_no": o.trade_id, "out_trade_no": o.out_trade_no,
                 "type": o.type, "name": o.name, "money": o.amount,
                 "trade_status": "TRADE_SUCCESS"}
            if o.param:
                d["param"] = o.param
            d["sign"] = h.epay_md5_sign(d, self.key)
            d["sign_type"] = "MD5"
            return d
        if self.family == "gatepay":
            d = {"order_id": o.trade_id, "out_order_id": o.out_trade_no, "price": o.amount,
                 "realprice": o.amount, "type": o.type, "paytime": str(int(time.time())),
                 "extend": o.param}
            d["sign"] = h.gatepay_sign(d, self.merchant_id, self.key)
            d["appkey"] = self.merchant_id
            return d
        d = {"memberid": self.merchant_id, "orderid": o.out_trade_no, "amount": o.amount,
             "true_amount": o.amount, "transaction_id": o.trade_id,
             "datetime": time.strftime("%Y%m%d%H%M%S"), "returncode": "00"}
        d["sign"] = h.payindex_sign(d, self.key)
        d["attach"] = o.param
        return d

    def notify(self, out_trade_no, timeout=10.0):
        """Pays the order and sends its notify to the order's notify_url as
        the platform does (epay GET, the others POST); returns the Reply."""
        self.set_state(out_trade_no, "paid")
        with self.lock:
            url = self.orders[out_trade_no].notify_url
        u = urllib.parse.urlsplit(url)
        body = h.form_encode(self.notify_params(out_trade_no))
        if self.family == "epay":
            return h.http(u.port, "GET", u.path + "?" + body, timeout=timeout)
        return h.http(u.port, "POST", u.path, body=body,
                      headers={"Content-Type": "application/x-www-form-urlencoded"},
                      timeout=timeout)

    def send_return(self, out_trade_no, params=None, timeout=10.0):
        """The payer's browser sent back to the order's return_url (the one
        the create call gave) with the return this platform builds for the
        order (return_params), or with `params`: epay and gatepay by GET,
        payindex by the browser's POST. Returns the Reply; a redirect is
        not followed."""
        with self.lock:
            url = self.orders[out_trade_no].return_url
        if params is None:
            params = return_params(self, out_trade_no)
        u = urllib.parse.urlsplit(url)
        body = h.form_encode(params)
        if self.family == "payindex":
            return h.http(u.port, "POST", u.path, body=body,
                          headers={"Content-Type": "application/x-www-form-urlencoded"},
                          timeout=timeout)
        return h.http(u.port, "GET", u.path + "?" + body, timeout=timeout)

    # --- HTTP -----------------------------------------------------------------

    def _json(self, handler, q, obj):
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        return self._send(handler, q, 200, body, "application/json; charset=utf-8")

    def _send(self, handler, q, status, body, ctype):
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", ctype)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            handler.wfile.flush()
            outcome = "answered"
        except OSError:
            outcome = "write-failed"
            handler.close_connection = True
        with self.cond:
            q.status = status
            q.outcome = outcome
            self.cond.notify_all()

    def _huge(self, handler, q, n, with_length):
        """`n` bytes of body (a JSON string that never ends in time)."""
        chunk = b"{\"code\":1,\"msg\":\"" + b"x" * (65536 - 14)
        outcome = "answered"
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            if with_length:
                handler.send_header("Content-Length", str(n))
            else:
                handler.send_header("Connection", "close")
                handler.close_connection = True
            handler.end_headers()
            while q.sent < n and not self._stopping.is_set():
                part = chunk[:min(len(chunk), n - q.sent)]
                handler.wfile.write(part)
                q.sent += len(part)
                if q.sent % (1 << 20) < len(part):
                    time.sleep(0.001)
            handler.wfile.flush()
        except OSError:
            outcome = "write-failed"
            handler.close_connection = True
        with self.cond:
            q.status = 200
            q.outcome = outcome
            self.cond.notify_all()

    def _client_gone(self, handler, seconds):
        """Waits up to `seconds`; True as soon as the client closed."""
        deadline = time.monotonic() + seconds
        sock = handler.connection
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping.is_set():
                return self._stopping.is_set()
            try:
                r, _, _ = select.select([sock], [], [], min(left, 0.05))
                if r and not sock.recv(1, socket.MSG_PEEK):
                    return True
            except (OSError, ValueError):
                return True

    # --- what it saw ------------------------------------------------------------

    def queries(self, out_trade_no=None, kind="order"):
        """The recorded queries (of `kind`, None: all) for `out_trade_no` (None: all)."""
        with self.lock:
            return [q for q in self.requests
                    if (kind is None or q.kind == kind)
                    and (out_trade_no is None or q.out_trade_no == out_trade_no)]

    def count(self, out_trade_no=None, kind="order"):
        return len(self.queries(out_trade_no, kind))

    def wait_for(self, pred, timeout):
        """Waits until pred(list of all queries) is true; returns it, or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                reqs = list(self.requests)
                if pred(reqs):
                    return reqs
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.1))

    def wait_count(self, n, timeout, out_trade_no=None, kind="order"):
        """Waits for `n` queries (of `kind` for `out_trade_no`); returns them or None."""
        def sel(rs):
            return [q for q in rs if (kind is None or q.kind == kind)
                    and (out_trade_no is None or q.out_trade_no == out_trade_no)]
        reqs = self.wait_for(lambda rs: len(sel(rs)) >= n, timeout)
        return None if reqs is None else sel(reqs)

    def max_in_window(self, window=1.0, out_trade_no=None, kind="order"):
        """The most queries whose arrival falls in any half-open interval of
        `window` seconds (sliding), and the queries of that busiest window."""
        ts = sorted(q.mono for q in self.queries(out_trade_no, kind))
        best, at, j = 0, None, 0
        for i in range(len(ts)):
            while ts[i] - ts[j] >= window:
                j += 1
            if i - j + 1 > best:
                best, at = i - j + 1, (ts[j], ts[i])
        return best, at

# --------------------------------------------------------------------------
# a client of the fake gateway (the self-test, and diagnostics)


def query(gw, out_trade_no, merchant_id=None, key=None, timeout=5.0, tamper=False):
    """Queries `gw` for one order the way the family's platform expects it;
    returns (HTTP status, body bytes)."""
    mid = gw.merchant_id if merchant_id is None else merchant_id
    k = gw.key if key is None else key
    if gw.family == "epay":
        path = "/api.php?" + h.form_encode([("act", "order"), ("pid", mid), ("key", k),
                                           ("out_trade_no", out_trade_no)])
        r = h.http(gw.port, "GET", path, timeout=timeout)
    elif gw.family == "gatepay":
        sign = gatepay_query_sign(mid, out_trade_no, k) + ("0" if tamper else "")
        path = "/api/order/check?" + h.form_encode([("appkey", mid),
                                                   ("out_order_id", out_trade_no),
                                                   ("sign", sign)])
        r = h.http(gw.port, "GET", path, timeout=timeout)
    else:
        sign = payindex_query_sign(mid, out_trade_no, k)
        if tamper:
            sign = sign[::-1]
        body = h.form_encode([("pay_memberid", mid), ("pay_orderid", out_trade_no),
                              ("pay_md5sign", sign)])
        r = h.http(gw.port, "POST", "/Pay_Trade_query.html", body=body,
                   headers={"Content-Type": "application/x-www-form-urlencoded"},
                   timeout=timeout)
    return r.status, r.body


def sweep_page(gw, page, limit=50, timeout=5.0):
    path = "/api.php?" + h.form_encode([("act", "orders"), ("pid", gw.merchant_id),
                                       ("key", gw.key), ("limit", str(limit)),
                                       ("page", str(page)),
                                       ("offset", str((page - 1) * limit))])
    r = h.http(gw.port, "GET", path, timeout=timeout)
    return r.status, r.body


# --------------------------------------------------------------------------
# The payer's return (SPEC 10.2): what each gateway puts on the browser's way
# back to the merchant, signed with the merchant's key as its document says.
# Each takes the gateway's order (GwOrder) and returns the parameters
# {name: value}, `sign` included.


def epay_return(merchant_id, key, order, status="TRADE_SUCCESS"):
    """epay-000.txt 页面跳转通知 (return_url): the notify's parameters and
    MD5 signature, sent as a GET."""
    p = {"pid": merchant_id, "trade_no": order.trade_id, "out_trade_no": order.out_trade_no,
         "type": order.type, "name": order.name, "money": order.amount, "trade_status": status}
    if order.param:
        p["param"] = order.param
    p["sign"] = h.epay_md5_sign(p, key)
    p["sign_type"] = "MD5"
    return p


GATEPAY_RETURN_FIELDS = ("price", "type", "product_id", "order_id", "out_order_id")


def gatepay_return_sign(params, appkey, appsecret):
    """gatepay-001.md 支付成功同步通知: md5(md5(appkey + price + type +
    product_id + order_id + out_order_id) + appsecret)."""
    inner = appkey + "".join(params.get(k, "") for k in GATEPAY_RETURN_FIELDS)
    return h.md5hex(h.md5hex(inner) + appsecret)


def gatepay_return(appkey, appsecret, order, product_id=""):
    """gatepay's 同步通知 (GET): price type product_id order_id out_order_id sign."""
    p = {"price": order.amount, "type": order.type, "product_id": product_id,
         "order_id": order.trade_id, "out_order_id": order.out_trade_no}
    p["sign"] = gatepay_return_sign(p, appkey, appsecret)
    return p


def payindex_return(memberid, key, order, returncode="00"):
    """payindex-002.txt pay_callbackurl: the notify's fields and signature,
    POSTed by the browser (attach unsigned)."""
    p = {"memberid": memberid, "orderid": order.out_trade_no, "amount": order.amount,
         "true_amount": order.true_amount, "transaction_id": order.trade_id,
         "datetime": time.strftime("%Y-%m-%d %H:%M:%S"), "returncode": returncode,
         "attach": order.param}
    p["sign"] = h.payindex_sign(p, key)
    return p


def return_params(gw, out_trade_no, **kw):
    """The return `gw`'s platform builds for its order `out_trade_no`, with
    its own merchant id and key."""
    o = gw.orders[out_trade_no]
    if gw.family == "epay":
        return epay_return(gw.merchant_id, gw.key, o, **kw)
    if gw.family == "gatepay":
        return gatepay_return(gw.merchant_id, gw.key, o, **kw)
    return payindex_return(gw.merchant_id, gw.key, o, **kw)
