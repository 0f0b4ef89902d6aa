package plugins

import (
	"context"
	"errors"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/plugins/lualib/luaconv"
)

// authProgress is carried by the broker between the steps of one
// exchange: the plugin that challenged, and the state its script returned
// (as Go values: the next step may run on another VM).
type authProgress struct {
	plugin string
	state  any
}

// OnAuth implements event.AuthGate: MQTT 5 enhanced authentication. The
// first step asks the plugins' on_auth in order until one answers; the
// later steps of the exchange go to the plugin that challenged.
func (m *Manager) OnAuth(ctx context.Context, req *event.AuthRequest) event.AuthDecision {
	s := m.acquire()
	defer s.release()
	if p, ok := req.State.(*authProgress); ok {
		in := s.byName[p.plugin]
		if in == nil || !in.has(hookAuth) {
			return event.AuthDecision{Verdict: event.Deny, Reason: "plugin " + p.plugin + " no longer authenticates (reloaded)"}
		}
		return in.auth(ctx, req, p.state)
	}
	for _, in := range s.hooks[hookAuth] {
		if d := in.auth(ctx, req, nil); d.Continue || d.Verdict != event.Pass {
			return d
		}
	}
	return event.AuthDecision{}
}

// auth calls on_auth for one step; state is what the plugin returned with
// the previous one.
func (in *instance) auth(ctx context.Context, req *event.AuthRequest, state any) event.AuthDecision {
	start := now()
	hs := &in.stats.hooks[hookAuth]
	hs.calls.Add(1)
	var d event.AuthDecision
	err := in.invoke(hookAuth, in.gates, in.deadline(ctx, start), 0, func(v *vm) int {
		L := v.L
		L.Push(connectTable(L, req.Connect))
		t := L.CreateTable(0, 5)
		t.RawSetString("method", lua.LString(req.Method))
		if req.Data != nil {
			t.RawSetString("data", lua.LString(req.Data))
		}
		t.RawSetString("step", lua.LNumber(req.Step))
		t.RawSetString("reauth", lua.LBool(req.Reauth))
		if state != nil {
			t.RawSetString("state", luaconv.ToLua(L, state))
		}
		L.Push(t)
		return 2
	}, func(r1, r2 lua.LValue) (err error) {
		d, err = parseAuth(r1, r2)
		return err
	})
	hs.observe(time.Duration(now() - start))
	if err != nil {
		in.fail(hookAuth, err)
		d = event.AuthDecision{Verdict: in.failVerdict(), Reason: in.failReason()}
	}
	if d.Continue {
		d.State = &authProgress{plugin: in.cfg.Name, state: d.State}
	}
	if !d.Continue && d.Verdict == event.Deny {
		hs.denied.Add(1)
	}
	return d
}

// parseAuth reads on_auth's answer: nil (not this plugin's method), true,
// false [, reason], {continue = true, data = , state = } (a challenge), or
// on_connect's table with data.
func parseAuth(r1, r2 lua.LValue) (event.AuthDecision, error) {
	switch x := r1.(type) {
	case *lua.LNilType:
		return event.AuthDecision{}, nil
	case lua.LBool:
		if x {
			return event.AuthDecision{Verdict: event.Allow}, nil
		}
		return event.AuthDecision{Verdict: event.Deny, Reason: reasonOf(r2)}, nil
	case *lua.LTable:
		var d event.AuthDecision
		switch data := x.RawGetString("data").(type) {
		case *lua.LNilType:
		case lua.LString:
			d.Data = []byte(data)
		default:
			return d, fmt.Errorf("on_auth returned data = %s: want a string", data.String())
		}
		switch c := x.RawGetString("continue").(type) {
		case *lua.LNilType:
		case lua.LBool:
			d.Continue = bool(c)
		default:
			return d, fmt.Errorf("on_auth returned continue = %s: want true or false", c.String())
		}
		if d.Continue {
			if x.RawGetString("allow") != lua.LNil {
				return d, errors.New("on_auth returned both continue and allow: a step either challenges or decides")
			}
			if st := x.RawGetString("state"); st != lua.LNil {
				g, err := luaconv.ToGo(st, true)
				if err != nil {
					return d, fmt.Errorf("on_auth returned a state that cannot be kept: %w", err)
				}
				d.State = g
			}
			return d, nil
		}
		a, err := parseConnectTable(hookAuth, x)
		if err != nil {
			return d, err
		}
		d.Verdict, d.Reason, d.Code, d.Username = a.verdict, a.reason, a.code, a.username
		if len(a.attrs) > 0 {
			d.Attrs = a.attrs
		}
		return d, nil
	}
	return event.AuthDecision{}, fmt.Errorf("on_auth returned a %s: want nil, true, false or a table", r1.Type())
}

var _ event.AuthGate = (*Manager)(nil)
