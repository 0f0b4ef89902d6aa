package plugins

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/plugins/lualib/luaconv"
)

// connectAnswer is one plugin's answer to on_connect.
type connectAnswer struct {
	verdict  event.Verdict
	reason   string
	code     byte
	username *string
	attrs    map[string]any
}

// subscribeAnswer is one plugin's answer to on_subscribe.
type subscribeAnswer struct {
	verdict event.Verdict
	qos     byte
	hasQoS  bool
	reason  string
}

// OnConnect implements event.ConnectGate: the plugins' on_connect in order,
// until one allows or denies. Attributes and user name overrides of the
// plugins that answered nil are kept (later keys win).
func (m *Manager) OnConnect(ctx context.Context, req *event.ConnectRequest) event.ConnectDecision {
	s := m.acquire()
	defer s.release()
	var d event.ConnectDecision
	for _, in := range s.hooks[hookConnect] {
		a := in.connect(ctx, req)
		if a.username != nil {
			d.Username = a.username
		}
		if len(a.attrs) > 0 {
			if d.Attrs == nil {
				d.Attrs = make(map[string]any, len(a.attrs))
			}
			for k, v := range a.attrs {
				d.Attrs[k] = v
			}
		}
		if a.verdict != event.Pass {
			d.Verdict, d.Reason, d.Code = a.verdict, a.reason, a.code
			break
		}
	}
	return d
}

// OnSubscribe implements event.SubscribeGate: the plugins' on_subscribe in
// order, until one answers.
func (m *Manager) OnSubscribe(ctx context.Context, c *event.Client, sub *event.Subscription) event.SubscribeDecision {
	s := m.acquire()
	defer s.release()
	for _, in := range s.hooks[hookSubscribe] {
		if a := in.subscribe(ctx, c, sub); a.verdict != event.Pass {
			return event.SubscribeDecision{Verdict: a.verdict, QoS: a.qos, HasQoS: a.hasQoS, Reason: a.reason}
		}
	}
	return event.SubscribeDecision{}
}

// OnPublish implements event.PublishGate: the plugins' on_publish in
// order, until one answers. The payload becomes a Lua string once, shared
// by every plugin that reads it.
func (m *Manager) OnPublish(ctx context.Context, c *event.Client, msg *event.Message) event.PublishDecision {
	s := m.acquire()
	defer s.release()
	payload := lua.LValue(lua.LNil)
	for _, in := range s.hooks[hookPublish] {
		if d := in.publish(ctx, c, msg, &payload); d.Verdict != event.Pass {
			return d
		}
	}
	return event.PublishDecision{}
}

// deadline returns when a call starting at start must end (since epoch):
// the plugin's timeout, or the caller's deadline if sooner.
func (in *instance) deadline(ctx context.Context, start int64) int64 {
	d := start + int64(in.timeout)
	if dl, ok := ctx.Deadline(); ok {
		if c := int64(dl.Sub(epoch)); c < d {
			return c
		}
	}
	return d
}

// invoke calls hook h on a VM of p with the arguments push pushes, and
// hands the two results to read while the VM is still held (the values
// belong to it). It waits for a VM until waitUntil; the call must end by
// waitUntil too when runFor is 0 (gates: the wait is part of the budget),
// else within runFor of getting the VM (observers). A VM whose call failed
// or timed out is discarded. The returned error is the call's (Lua error,
// timeout, busy) or read's.
func (in *instance) invoke(h hook, p *pool, waitUntil int64, runFor time.Duration, push func(v *vm) int, read func(r1, r2 lua.LValue) error) (err error) {
	v, err := p.get(waitUntil)
	if err != nil {
		return err
	}
	deadline := waitUntil
	if runFor > 0 {
		deadline = now() + int64(runFor)
	}
	fn := v.fns[h]
	if fn == nil {
		p.put(v)
		return nil
	}
	v.arm(deadline)
	healthy := false
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %s: panic: %v", in.script.Path, h, r)
			healthy = false
		}
		// A deadline that passed just as the answer came keeps the
		// answer, but the VM's context is spent: replace the VM.
		if !v.disarm() {
			healthy = false
		}
		if healthy {
			p.put(v)
		} else {
			p.discard(v)
		}
	}()
	L := v.L
	L.Push(fn)
	n := push(v)
	if perr := L.PCall(n, 2, nil); perr != nil {
		return luaError(perr, v.ctx, in.timeout)
	}
	r1, r2 := L.Get(-2), L.Get(-1)
	L.Pop(2)
	healthy = true
	return read(r1, r2)
}

// fail records a failed call and logs it (rate-limited).
func (in *instance) fail(h hook, err error) {
	hs := &in.stats.hooks[h]
	kind := "error"
	var te *timeoutError
	switch {
	case errors.Is(err, errBusy) || errors.Is(err, errClosed):
		hs.busy.Add(1)
		kind = "busy"
	case errors.As(err, &te):
		hs.timeouts.Add(1)
		kind = "timeout"
	default:
		hs.errors.Add(1)
	}
	policy := "fail " + in.cfg.Fail
	if !h.isGate() {
		policy = "event lost"
	}
	in.m.limiter.Warn(in.log, in.cfg.Name+"/"+h.String()+"/"+kind, "plugin hook failed", "hook", h.String(),
		"failure", kind, "err", err.Error(), "policy", policy)
}

// failVerdict is the verdict of the fail policy.
func (in *instance) failVerdict() event.Verdict {
	if in.open {
		return event.Allow
	}
	return event.Deny
}

func (in *instance) failReason() string { return "plugin " + in.cfg.Name + " unavailable" }

func (in *instance) connect(ctx context.Context, req *event.ConnectRequest) connectAnswer {
	start := now()
	hs := &in.stats.hooks[hookConnect]
	hs.calls.Add(1)
	var key string
	if in.cache != nil {
		key = connectKey(req)
		if e, ok := in.cache.get(key); ok {
			hs.cacheHits.Add(1)
			if e.connect.verdict == event.Deny {
				hs.denied.Add(1)
			}
			return e.connect
		}
	}
	var a connectAnswer
	err := in.invoke(hookConnect, in.gates, in.deadline(ctx, start), 0, func(v *vm) int {
		if v.nargs[hookConnect] < 1 {
			return 0
		}
		v.L.Push(connectTable(v.L, req))
		return 1
	}, func(r1, r2 lua.LValue) (err error) {
		a, err = parseConnect(r1, r2)
		return err
	})
	hs.observe(time.Duration(now() - start))
	if err != nil {
		in.fail(hookConnect, err)
		a = connectAnswer{verdict: in.failVerdict(), reason: in.failReason()}
	} else if in.cache != nil {
		in.cache.put(key, cached{connect: a})
	}
	if a.verdict == event.Deny {
		hs.denied.Add(1)
	}
	return a
}

// connectKey identifies a CONNECT for the cache: the password only as a
// hash, so that the cache holds no secret.
func connectKey(req *event.ConnectRequest) string {
	c := req.Client
	h := sha256.New()
	for _, s := range []string{c.Listener, c.ID, c.Username} {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	if req.HasPassword {
		h.Write([]byte{1})
		h.Write(req.Password)
	}
	if c.TLS != nil {
		h.Write([]byte("tls:" + c.TLS.CN))
	}
	return string(h.Sum(nil))
}

// connectTable is on_connect's client: the connection's fields plus
// password (nil when absent) and properties (the CONNECT's user properties).
func connectTable(L *lua.LState, req *event.ConnectRequest) *lua.LTable {
	t := L.CreateTable(0, 12)
	fillClient(L, t, req.Client)
	if req.HasPassword {
		t.RawSetString("password", lua.LString(req.Password))
	}
	t.RawSetString("properties", luaconv.UserProperties(L, req.UserProperties))
	if req.AuthMethod != "" {
		t.RawSetString("auth_method", lua.LString(req.AuthMethod))
	}
	return t
}

func reasonOf(v lua.LValue) string {
	switch x := v.(type) {
	case *lua.LNilType:
		return ""
	case lua.LString:
		return string(x)
	}
	return v.String()
}

// parseConnect reads on_connect's answer: nil, true, false [, reason], or
// {allow=, reason=, code=, username=, attrs=}.
func parseConnect(r1, r2 lua.LValue) (connectAnswer, error) {
	switch x := r1.(type) {
	case *lua.LNilType:
		return connectAnswer{}, nil
	case lua.LBool:
		if x {
			return connectAnswer{verdict: event.Allow}, nil
		}
		return connectAnswer{verdict: event.Deny, reason: reasonOf(r2)}, nil
	case *lua.LTable:
		return parseConnectTable(hookConnect, x)
	}
	return connectAnswer{}, fmt.Errorf("on_connect returned a %s: want nil, true, false or a table", r1.Type())
}

// parseAllow reads a table answer's allow: Pass when absent.
func parseAllow(h hook, x *lua.LTable) (event.Verdict, error) {
	switch al := x.RawGetString("allow").(type) {
	case *lua.LNilType:
		return event.Pass, nil
	case lua.LBool:
		if al {
			return event.Allow, nil
		}
		return event.Deny, nil
	}
	return event.Pass, fmt.Errorf("%s returned allow = %s: want true or false", h, x.RawGetString("allow").String())
}

// parseConnectTable reads the table answer of on_connect (and on_auth):
// {allow=, reason=, code=, username=, attrs=}.
func parseConnectTable(h hook, x *lua.LTable) (connectAnswer, error) {
	var a connectAnswer
	var err error
	if a.verdict, err = parseAllow(h, x); err != nil {
		return a, err
	}
	a.reason = reasonOf(x.RawGetString("reason"))
	switch c := x.RawGetString("code").(type) {
	case *lua.LNilType:
	case lua.LNumber:
		if c < 0x80 || c > 0xFF || float64(c) != math.Trunc(float64(c)) {
			return a, fmt.Errorf("%s returned code = %v: want an MQTT 5 error reason code (128 to 255)", h, c)
		}
		a.code = byte(c)
	default:
		return a, fmt.Errorf("%s returned code = %s: want a number", h, c.String())
	}
	switch u := x.RawGetString("username").(type) {
	case *lua.LNilType:
	case lua.LString:
		s := string(u)
		a.username = &s
	default:
		return a, fmt.Errorf("%s returned username = %s: want a string", h, u.String())
	}
	switch at := x.RawGetString("attrs").(type) {
	case *lua.LNilType:
	case *lua.LTable:
		g, err := luaconv.ToGo(at, true)
		if err != nil {
			return a, fmt.Errorf("%s returned attrs that cannot be kept: %w", h, err)
		}
		if m, ok := g.(map[string]any); ok {
			a.attrs = m
		} else if len(g.([]any)) > 0 {
			return a, fmt.Errorf("%s returned attrs as a list: want a table of named values", h)
		}
	default:
		return a, fmt.Errorf("%s returned attrs = %s: want a table", h, at.String())
	}
	return a, nil
}

func (in *instance) subscribe(ctx context.Context, c *event.Client, sub *event.Subscription) subscribeAnswer {
	start := now()
	hs := &in.stats.hooks[hookSubscribe]
	hs.calls.Add(1)
	var key string
	if in.cache != nil {
		key = c.ID + "\x00" + c.Username + "\x00" + sub.Filter + "\x00" + strconv.Itoa(int(sub.QoS))
		if e, ok := in.cache.get(key); ok {
			hs.cacheHits.Add(1)
			if e.sub.verdict == event.Deny {
				hs.denied.Add(1)
			}
			return e.sub
		}
	}
	var a subscribeAnswer
	err := in.invoke(hookSubscribe, in.gates, in.deadline(ctx, start), 0, func(v *vm) int {
		n := v.nargs[hookSubscribe]
		if n < 1 {
			return 0
		}
		v.L.Push(v.clientTable(c))
		if n < 2 {
			return 1
		}
		v.L.Push(subscriptionTable(v.L, sub))
		return 2
	}, func(r1, r2 lua.LValue) (err error) {
		a, err = parseSubscribe(r1, r2)
		return err
	})
	hs.observe(time.Duration(now() - start))
	if err != nil {
		in.fail(hookSubscribe, err)
		a = subscribeAnswer{verdict: in.failVerdict(), reason: in.failReason()}
	} else if in.cache != nil {
		in.cache.put(key, cached{sub: a})
	}
	if a.verdict == event.Deny {
		hs.denied.Add(1)
	}
	return a
}

func subscriptionTable(L *lua.LState, s *event.Subscription) *lua.LTable {
	t := L.CreateTable(0, 6)
	t.RawSetString("filter", lua.LString(s.Filter))
	t.RawSetString("qos", lua.LNumber(s.QoS))
	t.RawSetString("no_local", lua.LBool(s.NoLocal))
	t.RawSetString("retain_as_published", lua.LBool(s.RetainAsPublished))
	t.RawSetString("retain_handling", lua.LNumber(s.RetainHandling))
	t.RawSetString("identifier", lua.LNumber(s.Identifier))
	return t
}

func qosOf(v lua.LNumber) (byte, bool) {
	if v != 0 && v != 1 && v != 2 {
		return 0, false
	}
	return byte(v), true
}

// parseSubscribe reads on_subscribe's answer: nil, true, false [, reason],
// a QoS to grant, or {allow=, qos=, reason=}.
func parseSubscribe(r1, r2 lua.LValue) (subscribeAnswer, error) {
	switch x := r1.(type) {
	case *lua.LNilType:
		return subscribeAnswer{}, nil
	case lua.LBool:
		if x {
			return subscribeAnswer{verdict: event.Allow}, nil
		}
		return subscribeAnswer{verdict: event.Deny, reason: reasonOf(r2)}, nil
	case lua.LNumber:
		q, ok := qosOf(x)
		if !ok {
			return subscribeAnswer{}, fmt.Errorf("on_subscribe returned %v: a granted QoS is 0, 1 or 2", x)
		}
		return subscribeAnswer{verdict: event.Allow, qos: q, hasQoS: true}, nil
	case *lua.LTable:
		var a subscribeAnswer
		a.reason = reasonOf(x.RawGetString("reason"))
		switch q := x.RawGetString("qos").(type) {
		case *lua.LNilType:
		case lua.LNumber:
			var ok bool
			if a.qos, ok = qosOf(q); !ok {
				return a, fmt.Errorf("on_subscribe returned qos = %v: want 0, 1 or 2", q)
			}
			a.hasQoS, a.verdict = true, event.Allow
		default:
			return a, fmt.Errorf("on_subscribe returned qos = %s: want a number", q.String())
		}
		if v, err := parseAllow(hookSubscribe, x); err != nil {
			return a, err
		} else if v != event.Pass {
			a.verdict = v
		}
		return a, nil
	}
	return subscribeAnswer{}, fmt.Errorf("on_subscribe returned a %s: want nil, true, false, a QoS or a table", r1.Type())
}

func (in *instance) publish(ctx context.Context, c *event.Client, msg *event.Message, payload *lua.LValue) event.PublishDecision {
	start := now()
	hs := &in.stats.hooks[hookPublish]
	hs.calls.Add(1)
	var d event.PublishDecision
	err := in.invoke(hookPublish, in.gates, in.deadline(ctx, start), 0, func(v *vm) int {
		n := v.nargs[hookPublish]
		if n < 1 {
			return 0
		}
		v.L.Push(v.clientTable(c))
		if n < 2 {
			return 1
		}
		if *payload == lua.LNil && v.msgUse.needs(fieldPayload) {
			*payload = lua.LString(msg.Payload)
		}
		v.L.Push(v.messageTable(msg, *payload))
		return 2
	}, func(r1, r2 lua.LValue) (err error) {
		d, err = parsePublish(r1, r2, msg, *payload)
		return err
	})
	hs.observe(time.Duration(now() - start))
	if err != nil {
		in.fail(hookPublish, err)
		d = event.PublishDecision{Verdict: in.failVerdict(), Reason: in.failReason()}
	}
	if d.Verdict == event.Deny || d.Verdict == event.Drop {
		hs.denied.Add(1)
	}
	return d
}

// parsePublish reads on_publish's answer: nil, true, false [, reason],
// "drop", or a table rewriting the message (or refusing it with
// allow = false).
func parsePublish(r1, r2 lua.LValue, orig *event.Message, payload lua.LValue) (event.PublishDecision, error) {
	switch x := r1.(type) {
	case *lua.LNilType:
		return event.PublishDecision{}, nil
	case lua.LBool:
		if x {
			return event.PublishDecision{Verdict: event.Allow}, nil
		}
		return event.PublishDecision{Verdict: event.Deny, Reason: reasonOf(r2)}, nil
	case lua.LString:
		if x == "drop" {
			return event.PublishDecision{Verdict: event.Drop, Reason: reasonOf(r2)}, nil
		}
		return event.PublishDecision{}, fmt.Errorf("on_publish returned %q: the only string answer is \"drop\"", string(x))
	case *lua.LTable:
		return parseRewrite(x, orig, payload)
	}
	return event.PublishDecision{}, fmt.Errorf("on_publish returned a %s: want nil, true, false, \"drop\" or a table", r1.Type())
}

func parseRewrite(t *lua.LTable, orig *event.Message, payload lua.LValue) (event.PublishDecision, error) {
	switch al := t.RawGetString("allow").(type) {
	case *lua.LNilType:
	case lua.LBool:
		if !al {
			return event.PublishDecision{Verdict: event.Deny, Reason: reasonOf(t.RawGetString("reason"))}, nil
		}
	default:
		return event.PublishDecision{}, fmt.Errorf("on_publish returned allow = %s: want true or false", al.String())
	}
	out := *orig
	changed := false
	switch v := t.RawGetString("topic").(type) {
	case *lua.LNilType:
	case lua.LString:
		if string(v) == "" {
			return event.PublishDecision{}, errors.New("on_publish returned an empty topic")
		}
		if string(v) != orig.Topic {
			out.Topic, changed = string(v), true
		}
	default:
		return event.PublishDecision{}, fmt.Errorf("on_publish returned topic = %s: want a string", v.String())
	}
	switch v := t.RawGetString("payload").(type) {
	case *lua.LNilType:
	case lua.LString:
		same := false
		if p, ok := payload.(lua.LString); ok {
			same = p == v
		} else {
			same = string(v) == string(orig.Payload)
		}
		if !same {
			out.Payload, changed = []byte(v), true
		}
	default:
		return event.PublishDecision{}, fmt.Errorf("on_publish returned payload = %s: want a string", v.String())
	}
	switch v := t.RawGetString("qos").(type) {
	case *lua.LNilType:
	case lua.LNumber:
		q, ok := qosOf(v)
		if !ok {
			return event.PublishDecision{}, fmt.Errorf("on_publish returned qos = %v: want 0, 1 or 2", v)
		}
		if q != orig.QoS {
			out.QoS, changed = q, true
		}
	default:
		return event.PublishDecision{}, fmt.Errorf("on_publish returned qos = %s: want a number", v.String())
	}
	switch v := t.RawGetString("retain").(type) {
	case *lua.LNilType:
	case lua.LBool:
		if bool(v) != orig.Retain {
			out.Retain, changed = bool(v), true
		}
	default:
		return event.PublishDecision{}, fmt.Errorf("on_publish returned retain = %s: want true or false", v.String())
	}
	switch v := t.RawGetString("properties").(type) {
	case *lua.LNilType:
	case *lua.LTable:
		p, err := luaconv.ParseProperties(v)
		if err != nil {
			return event.PublishDecision{}, fmt.Errorf("on_publish returned properties: %w", err)
		}
		out.Props, changed = p, true
	default:
		return event.PublishDecision{}, fmt.Errorf("on_publish returned properties = %s: want a table", v.String())
	}
	d := event.PublishDecision{Verdict: event.Allow}
	if changed {
		d.Message = &out
	}
	return d, nil
}
