package core

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/packet"
)

// MQTT 5 enhanced authentication (section 4.12).
//
// A CONNECT that names an authentication method is authenticated by the
// auth gate (the connect gate, when it implements event.AuthGate) instead
// of the connect gate and the built-in users. The gate answers each step:
// a challenge goes to the client in AUTH 0x18 and the client's AUTH 0x18
// comes back as the next step, until the gate allows (CONNACK 0x00 with
// the method and the gate's last data) or refuses (CONNACK with the
// reason). The whole exchange runs under the connect timeout. A connected
// client may re-authenticate with AUTH 0x19 and the same method; the
// exchange then runs beside its other packets and ends with AUTH 0x00, or
// with DISCONNECT when refused.

// authState is a client's enhanced authentication: the method agreed in
// CONNECT and a re-authentication in progress (reader goroutine only).
type authState struct {
	method  string
	connect *event.ConnectRequest
	// connack is the gate's data for the CONNACK, until it is sent.
	connack []byte
	// step > 0 while re-authenticating, with the gate's state.
	step  int
	state any
}

// errAuthDisconnect ends a connection whose client sent DISCONNECT in the
// middle of its authentication.
var errAuthDisconnect = errors.New("client sent DISCONNECT during enhanced authentication")

// authGate returns the auth gate, or nil.
func (s *Server) authGate() event.AuthGate {
	g, _ := s.gates.Load().connect.(event.AuthGate)
	return g
}

// askAuth asks the gate about one step.
func (c *client) askAuth(g event.AuthGate, req *event.AuthRequest) event.AuthDecision {
	ctx, cancel := context.WithCancel(c.srv.ctx)
	defer cancel()
	return g.OnAuth(ctx, req)
}

// authenticateEnhanced runs the exchange of a CONNECT with an
// authentication method and, when the gate allows, leaves the method and
// the CONNACK's data in c.auth.
func (c *client) authenticateEnhanced(cp *packet.Connect, req *event.ConnectRequest) error {
	s := c.srv
	method := cp.Props.AuthMethod
	g := s.authGate()
	if g == nil { // [MQTT-4.12.0-1]
		return c.refuse(packet.BadAuthenticationMethod, "authentication method "+strconv.Quote(method)+" is not supported")
	}
	ar := &event.AuthRequest{Connect: req, Method: method, Data: cp.Props.AuthData, Step: 1}
	for {
		d := c.askAuth(g, ar)
		if !d.Continue {
			switch d.Verdict {
			case event.Allow:
				if d.Username != nil {
					c.info.Username = *d.Username
				}
				if d.Attrs != nil {
					c.info.Attrs = d.Attrs
				}
				c.auth = &authState{method: method, connect: req, connack: d.Data}
				return nil
			case event.Deny, event.Drop:
				code, why := authRefusal(d)
				c.log.Info("connection refused", "auth_method", method, "reason", why, "code", code)
				return c.refuse(code, why)
			default:
				return c.refuse(packet.BadAuthenticationMethod, "authentication method "+strconv.Quote(method)+" is not supported")
			}
		}
		// A challenge [MQTT-4.12.0-2]; the answer must be AUTH 0x18 with
		// the same method [MQTT-4.12.0-3] [MQTT-4.12.0-5], and nothing but
		// AUTH or DISCONNECT may come before the CONNACK [MQTT-3.1.2-30].
		c.sendControl(&packet.Auth{ReasonCode: packet.ContinueAuthentication, Props: packet.Properties{AuthMethod: method, AuthData: d.Data}})
		p, size, err := c.reader.ReadPacket()
		s.stats.BytesReceived.Add(uint64(size))
		if err != nil {
			var perr *packet.Error
			if errors.As(err, &perr) {
				return c.refuse(perr.Code, perr.Msg)
			}
			return fmt.Errorf("during enhanced authentication: %w", err)
		}
		switch p := p.(type) {
		case *packet.Auth:
			if p.ReasonCode != packet.ContinueAuthentication {
				return c.refuse(packet.ProtocolError, fmt.Sprintf("AUTH with reason code 0x%02X during authentication: want 0x18", byte(p.ReasonCode)))
			}
			if p.Props.AuthMethod != method {
				return c.refuse(packet.ProtocolError, "AUTH names authentication method "+strconv.Quote(p.Props.AuthMethod)+"; CONNECT named "+strconv.Quote(method))
			}
			ar.Step++
			ar.Data = p.Props.AuthData
			ar.State = d.State
		case *packet.Disconnect:
			return errAuthDisconnect
		default:
			return c.refuse(packet.ProtocolError, p.Type().String()+" before CONNACK during enhanced authentication")
		}
	}
}

// authRefusal is the reason code and reason of a refusing decision.
func authRefusal(d event.AuthDecision) (packet.ReasonCode, string) {
	return refusal(d.Code, d.Reason, "authentication failed")
}

// handleAuth handles an AUTH from a connected client: the start or a step
// of a re-authentication [MQTT-4.12.1-1].
func (c *client) handleAuth(p *packet.Auth) error {
	a := c.auth
	if a == nil { // [MQTT-4.12.0-7]
		return &packet.Error{Code: packet.ProtocolError, Msg: "AUTH, but CONNECT named no authentication method"}
	}
	if p.Props.AuthMethod != a.method {
		return &packet.Error{Code: packet.ProtocolError, Msg: "AUTH names authentication method " + strconv.Quote(p.Props.AuthMethod) + "; CONNECT named " + strconv.Quote(a.method)}
	}
	switch p.ReasonCode {
	case packet.ReAuthenticate:
		if a.step > 0 {
			return &packet.Error{Code: packet.ProtocolError, Msg: "AUTH 0x19 while a re-authentication is in progress"}
		}
		a.step, a.state = 1, nil
	case packet.ContinueAuthentication:
		if a.step == 0 {
			return &packet.Error{Code: packet.ProtocolError, Msg: "AUTH 0x18 with no authentication in progress"}
		}
		a.step++
	default:
		return &packet.Error{Code: packet.ProtocolError, Msg: fmt.Sprintf("AUTH with reason code 0x%02X from a client", byte(p.ReasonCode))}
	}
	g := c.srv.authGate()
	if g == nil { // the plugins were removed by a reload
		return &packet.Error{Code: packet.BadAuthenticationMethod, Msg: "authentication method " + strconv.Quote(a.method) + " is no longer supported"}
	}
	d := c.askAuth(g, &event.AuthRequest{Connect: a.connect, Method: a.method, Data: p.Props.AuthData, Step: a.step, State: a.state, Reauth: true})
	if d.Continue {
		a.state = d.State
		c.sendControl(&packet.Auth{ReasonCode: packet.ContinueAuthentication, Props: packet.Properties{AuthMethod: a.method, AuthData: d.Data}})
		return nil
	}
	a.step, a.state = 0, nil
	switch d.Verdict {
	case event.Allow:
		c.log.Debug("client re-authenticated", "auth_method", a.method)
		c.sendControl(&packet.Auth{ReasonCode: packet.Success, Props: packet.Properties{AuthMethod: a.method, AuthData: d.Data}})
		return nil
	case event.Deny, event.Drop:
		code, why := authRefusal(d)
		c.log.Info("re-authentication refused", "auth_method", a.method, "reason", why, "code", code)
		return &packet.Error{Code: code, Msg: why} // DISCONNECT with the code [MQTT-4.12.1-2]
	}
	return &packet.Error{Code: packet.BadAuthenticationMethod, Msg: "authentication method " + strconv.Quote(a.method) + " is not supported"}
}
