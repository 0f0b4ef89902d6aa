package core

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/core/topic"
)

// errRefused is the close reason after a CONNACK that refuses.
type errRefused struct {
	code packet.ReasonCode
	why  string
}

func (e errRefused) Error() string { return fmt.Sprintf("connection refused: %v: %s", e.code, e.why) }

// refuse queues a CONNACK with code and returns the reason to close.
func (c *client) refuse(code packet.ReasonCode, why string) error {
	ack := &packet.Connack{ReasonCode: code}
	if c.version == packet.V5 {
		ack.Props.ReasonString = why
	}
	c.sendControl(ack)
	c.srv.stats.Refused.Add(1)
	return errRefused{code, why}
}

func (c *client) handleConnect(cp *packet.Connect) error {
	s := c.srv
	v := cp.ProtocolLevel
	c.cleanStart = cp.CleanStart
	c.id = cp.ClientID

	// Client identifier [MQTT-3.1.3-5..9].
	assigned := false
	if c.id == "" {
		switch {
		case v == packet.V31:
			return c.refuse(packet.ClientIdentifierNotValid, "MQTT 3.1 requires a client identifier")
		case !on(s.opts.AllowEmptyClientID):
			return c.refuse(packet.ClientIdentifierNotValid, "empty client identifiers are not allowed")
		case v == packet.V311 && !cp.CleanStart: // [MQTT-3.1.3-8]
			return c.refuse(packet.ClientIdentifierNotValid, "an empty client identifier requires clean session")
		}
		c.id = "tide-" + strconv.FormatUint(uint64(time.Now().UnixNano()), 36) + "-" + strconv.FormatUint(s.idSeq.Add(1), 36)
		assigned = true
	}
	if len(c.id) > s.opts.MaxClientIDLength {
		return c.refuse(packet.ClientIdentifierNotValid, fmt.Sprintf("client identifier longer than %d bytes", s.opts.MaxClientIDLength))
	}
	c.log = c.log.With("client", c.id)

	// The will.
	if w := cp.Will; w != nil {
		if err := topic.ValidName(w.Topic); err != nil {
			if v == packet.V5 {
				return c.refuse(packet.TopicNameInvalid, "will topic: "+err.Error())
			}
			return fmt.Errorf("will topic: %w", err)
		}
		if w.Retain && !on(s.opts.RetainAvailable) {
			if v == packet.V5 {
				return c.refuse(packet.RetainNotSupported, "retained messages are not available") // [MQTT-3.2.2-12]
			}
			w.Retain = false
		}
	}

	username := cp.Username
	// certUser: the user name comes from a verified client certificate,
	// which authenticates it (as Mosquitto's use_identity_as_username: no
	// password is checked).
	certUser := false
	tlsi := tlsInfo(c.conn)
	if tlsi != nil && tlsi.Verified {
		switch c.ln.opts.UsernameFrom {
		case "cn":
			username, certUser = tlsi.CN, tlsi.CN != ""
		case "san":
			if len(tlsi.SANs) > 0 {
				username, certUser = tlsi.SANs[0], tlsi.SANs[0] != ""
			}
		}
	}
	c.info = &event.Client{
		ID:         c.id,
		Username:   username,
		RemoteAddr: c.conn.RemoteAddr().String(),
		Listener:   c.ln.opts.Name,
		Protocol:   v,
		CleanStart: cp.CleanStart,
		KeepAlive:  cp.KeepAlive,
		TLS:        tlsi,
	}
	if err := c.authenticate(cp, username, certUser); err != nil {
		return err
	}

	// Keep alive [MQTT-3.1.2-22..24]; server keep alive for v5 [MQTT-3.2.2-21].
	ka := time.Duration(cp.KeepAlive) * time.Second
	var serverKA *uint16
	if max := s.opts.MaxKeepAlive; max > 0 && (ka == 0 || ka > max) {
		ka = max
		secs := uint16(min(max/time.Second, 65535))
		serverKA = &secs
	}
	c.keepAlive = ka

	// Session expiry: v5 from the property; v3 clean session 0, else never.
	var expiry uint32
	if v == packet.V5 {
		if cp.Props.SessionExpiry != nil {
			expiry = *cp.Props.SessionExpiry
		}
	} else if !cp.CleanStart {
		expiry = neverExpire
	}
	c.connExpiry = expiry
	c.noProblemInfo = cp.Props.RequestProblemInfo != nil && *cp.Props.RequestProblemInfo == 0
	capped := s.capExpiry(expiry)

	// Flow control toward the client.
	c.window = s.opts.MaxInflight
	if rm := cp.Props.ReceiveMaximum; rm != nil && int(*rm) < c.window {
		c.window = int(*rm)
	}
	if mp := cp.Props.MaximumPacketSize; mp != nil {
		c.maxOut = *mp
	}

	// The will message, built now so its properties are validated once.
	if w := cp.Will; w != nil {
		m := &Message{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, ClientID: c.id, Username: username, from: c.info}
		if v == packet.V5 {
			m.Props = messageProps(&w.Props)
			if w.Props.MessageExpiry != nil {
				m.ttl = time.Duration(*w.Props.MessageExpiry) * time.Second
			}
			if w.Props.WillDelay != nil {
				c.willDelay = *w.Props.WillDelay
			}
		}
		c.will = m
	}

	sess, present := s.attach(c, capped, func(sess *session, present bool) {
		sess.username = c.info.Username
		sess.acl.Store(s.rulesFor(c.id, c.info.Username))
		ack := &packet.Connack{SessionPresent: present}
		if v == packet.V5 {
			ack.Props = s.connackProps()
			if assigned {
				ack.Props.AssignedClientID = c.id
			}
			if capped != expiry {
				ack.Props.SessionExpiry = packet.Ptr(capped)
			}
			ack.Props.ServerKeepAlive = serverKA
			if a := c.auth; a != nil { // [MQTT-4.12.0-5]
				ack.Props.AuthMethod, ack.Props.AuthData = a.method, a.connack
				a.connack = nil
			}
		}
		c.sendConnack(ack)
		c.sess = sess
		c.connectedAt = time.Now()
		c.connected.Store(true) // publishes the fields above to other goroutines
		c.reader.MaxSize = s.opts.MaxPacketSize
		// From now on the deadline reader applies the keep alive; without
		// one, the connect timeout no longer applies either.
		_ = c.conn.SetReadDeadline(time.Time{})
		sess.resume(c)
	})
	_ = sess
	s.stats.Connected.Add(1)
	s.stats.ConnectsTotal.Add(1)
	c.log.Debug("client connected", "protocol", v, "clean_start", cp.CleanStart, "session_present", present, "keep_alive", c.keepAlive)
	if s.bus.Wants(event.Connect) {
		s.bus.Emit(&event.Event{Kind: event.Connect, Time: c.connectedAt, Client: c.info})
	}
	return nil
}

// connackProps are the capabilities told to every v5 client.
func (s *Server) connackProps() packet.Properties {
	p := packet.Properties{
		ReceiveMaximum:    packet.Ptr(uint16(s.opts.ReceiveMaximum)),
		MaximumPacketSize: packet.Ptr(uint32(s.opts.MaxPacketSize)),
		TopicAliasMaximum: packet.Ptr(uint16(s.opts.TopicAliasMaximum)),
	}
	off := func(b *bool) *byte {
		if on(b) {
			return nil // absent means available
		}
		return packet.Ptr[byte](0)
	}
	p.RetainAvailable = off(s.opts.RetainAvailable)
	p.WildcardSubAvailable = off(s.opts.WildcardSubscriptions)
	p.SharedSubAvailable = off(s.opts.SharedSubscriptions)
	p.SubIDAvailable = off(s.opts.SubscriptionIdentifiers)
	return p
}

func (s *Server) capExpiry(e uint32) uint32 {
	if max := s.opts.MaxSessionExpiry; max > 0 {
		secs := uint32(min(max/time.Second, neverExpire-1))
		if e > secs {
			return secs
		}
	}
	return e
}

// refusal is the reason code and reason of a gate's refusal: 0x87 not
// authorized unless the gate gave an error code, dflt unless it gave a
// reason.
func refusal(code byte, why, dflt string) (packet.ReasonCode, string) {
	rc := packet.ReasonCode(code)
	if rc < 0x80 {
		rc = packet.NotAuthorized
	}
	if why == "" {
		why = dflt
	}
	return rc, why
}

// connectRequest is the CONNECT as the gates see it.
func (c *client) connectRequest(cp *packet.Connect) *event.ConnectRequest {
	req := &event.ConnectRequest{Client: c.info, Password: cp.Password, HasPassword: cp.PasswordFlag, AuthMethod: cp.Props.AuthMethod}
	for _, u := range cp.Props.User {
		req.UserProperties = append(req.UserProperties, event.UserProperty{Key: u.Key, Value: u.Value})
	}
	return req
}

// authenticate applies the connect gate, then the listener's default: a user
// name from a verified client certificate (certUser), a user from the
// static table with the right password, or anonymous access where the
// listener allows it. A CONNECT with an MQTT 5 authentication method is the
// auth gate's alone (see enhauth.go).
func (c *client) authenticate(cp *packet.Connect, username string, certUser bool) error {
	s := c.srv
	if cp.Props.AuthMethod != "" {
		return c.authenticateEnhanced(cp, c.connectRequest(cp))
	}
	if g := s.gates.Load().connect; g != nil {
		req := c.connectRequest(cp)
		ctx, cancel := context.WithCancel(s.ctx)
		d := g.OnConnect(ctx, req)
		cancel()
		if d.Username != nil {
			c.info.Username = *d.Username
		}
		if d.Attrs != nil {
			c.info.Attrs = d.Attrs
		}
		switch d.Verdict {
		case event.Allow:
			return nil
		case event.Deny, event.Drop:
			code, why := refusal(d.Code, d.Reason, "refused by plugin")
			c.log.Info("connection refused", "reason", why, "code", code)
			return c.refuse(code, why)
		}
	}
	if certUser {
		return nil
	}
	hasUser := cp.UsernameFlag || username != ""
	if hasUser {
		switch err := s.checkBuiltin(c, username, cp.Password); err {
		case nil:
			return nil
		case errUnknownUser:
			return c.refuse(packet.BadUserNameOrPassword, "unknown user")
		case errBadPassword:
			return c.refuse(packet.BadUserNameOrPassword, "bad user name or password")
		}
	}
	if c.ln.opts.AllowAnonymous {
		return nil
	}
	c.log.Info("connection refused: anonymous access is not allowed on this listener")
	return c.refuse(packet.NotAuthorized, "anonymous access is not allowed")
}

// attach binds c to its session, taking it over from another connection
// and honouring clean start [MQTT-3.1.2-4..6]. ready runs under the session
// lock, so it can queue the CONNACK and resume before any delivery.
func (s *Server) attach(c *client, expiry uint32, ready func(*session, bool)) (*session, bool) {
	for {
		s.mu.Lock()
		var old *session
		if v, ok := s.sessions.Load(c.id); ok {
			old = v.(*session)
		}
		if old != nil {
			old.mu.Lock()
			oc := old.conn
			old.mu.Unlock()
			if oc != nil {
				s.mu.Unlock()
				// Take-over [MQTT-3.1.4-3]: close the other connection and wait
				// until it has let go of the session.
				c.log.Info("session taken over", "from", oc.conn.RemoteAddr().String())
				oc.takenOver.Store(true)
				oc.kick(packet.SessionTakenOver, "session taken over")
				select {
				case <-oc.done:
				case <-time.After(10 * time.Second):
					s.log.Error("take-over: previous connection did not finish", "client", c.id)
				}
				continue
			}
		}
		var toPublish []*Message
		present := false
		var sess *session
		if old != nil {
			old.mu.Lock()
			// A reconnect in time cancels a delayed will.
			if old.willTimer != nil {
				old.willTimer.Stop()
				old.willTimer = nil
				old.will = nil
			}
			if old.expiryTime != nil {
				old.expiryTime.Stop()
				old.expiryTime = nil
			}
			tw := old.takeoverWill
			old.takeoverWill = nil
			if c.cleanStart || old.expiry == 0 {
				// The old session ends; a will of a taken-over connection whose
				// session is not resumed is published.
				if tw != nil {
					toPublish = append(toPublish, tw)
				}
				old.clearState()
				old.ended = true
				old.deleteRecord()
				old.flushOps(nil)
				old.mu.Unlock()
				s.sessions.Delete(c.id)
				s.nSess.Add(-1)
			} else {
				sess = old
				present = true
			}
		}
		if sess == nil {
			sess = newSession(s, c.id)
			sess.mu.Lock()
			s.sessions.Store(c.id, sess)
			s.nSess.Add(1)
		}
		sess.conn = c
		sess.online.Store(true)
		sess.expiry = expiry
		sess.disconnected = time.Time{}
		sess.saveSession(c.will, c.willDelay)
		ready(sess, present)
		sess.flushOps(nil)
		sess.mu.Unlock()
		s.mu.Unlock()
		for _, m := range toPublish {
			s.publishWill(m)
		}
		return sess, present
	}
}

// finish releases the session after the connection ended: the will is
// published or scheduled, the session expires or ends.
func (c *client) finish(reason error) {
	defer close(c.done)
	s := c.srv
	if !c.connected.Load() {
		if reason != nil && !errors.As(reason, new(errRefused)) {
			c.log.Debug("connection closed before CONNECT completed", "reason", reason)
		}
		return
	}
	s.stats.Connected.Add(-1)
	sess := c.sess
	sendWill := c.will != nil && (!c.graceful || c.disconnect == packet.DisconnectWithWill)
	info := &event.DisconnectInfo{Graceful: c.graceful, Code: byte(c.disconnect), WillSent: sendWill}
	if reason != nil && reason != errDisconnected {
		info.Reason = reason.Error()
		var k errKick
		if errors.As(reason, &k) {
			info.Code = byte(k.code)
		}
	} else {
		info.Reason = "client sent DISCONNECT"
	}
	if c.graceful {
		c.log.Debug("client disconnected", "reason", info.Reason)
	} else {
		c.log.Info("client connection lost", "reason", info.Reason)
	}
	defer func() {
		if s.bus.Wants(event.Disconnect) {
			s.bus.Emit(&event.Event{Kind: event.Disconnect, Time: time.Now(), Client: c.info, Disconnect: info})
		}
	}()

	if c.takenOver.Load() {
		sess.mu.Lock()
		if sess.conn == c {
			sess.conn = nil
			sess.online.Store(false)
		}
		if sendWill {
			sess.takeoverWill = c.will
		}
		sess.mu.Unlock()
		return
	}

	var publishNow *Message
	s.mu.Lock()
	sess.mu.Lock()
	if sess.conn == c {
		sess.conn = nil
		sess.online.Store(false)
	}
	if sess.expiry == 0 || sess.ended {
		// The session ends with the connection [MQTT-3.1.2-10].
		if !sess.ended {
			sess.clearState()
			sess.ended = true
			sess.deleteRecord()
			sess.flushOps(nil)
			if v, ok := s.sessions.Load(c.id); ok && v.(*session) == sess {
				s.sessions.Delete(c.id)
				s.nSess.Add(-1)
			}
		}
		if sendWill {
			publishNow = c.will
		}
	} else {
		if sendWill {
			delay := c.willDelay
			if delay > sess.expiry {
				delay = sess.expiry
			}
			if delay == 0 {
				publishNow = c.will
			} else {
				sess.will = c.will
				sess.willTimer = time.AfterFunc(time.Duration(delay)*time.Second, func() { s.fireWill(sess) })
			}
		}
		if sess.expiry != neverExpire {
			sess.expiryTime = time.AfterFunc(time.Duration(sess.expiry)*time.Second, func() { s.expireSession(sess) })
		}
		sess.disconnected = time.Now()
		sess.saveSession(sess.will, c.willDelay)
		sess.flushOps(nil)
	}
	sess.mu.Unlock()
	s.mu.Unlock()
	if publishNow != nil {
		s.publishWill(publishNow)
	}
}

// fireWill publishes a delayed will if the client has not come back.
func (s *Server) fireWill(sess *session) {
	if s.closing.Load() {
		return // the stored session keeps the will for the next start
	}
	sess.mu.Lock()
	w := sess.will
	sess.will = nil
	sess.willTimer = nil
	if sess.conn != nil {
		w = nil
	}
	if w != nil && !sess.ended {
		sess.saveSession(nil, 0)
		sess.flushOps(nil)
	}
	sess.mu.Unlock()
	if w != nil {
		s.publishWill(w)
	}
}

// expireSession ends an offline session whose expiry interval passed; a
// will still waiting for its delay is published now [MQTT-3.1.3-9].
func (s *Server) expireSession(sess *session) {
	if s.closing.Load() {
		return
	}
	s.mu.Lock()
	sess.mu.Lock()
	if sess.conn != nil || sess.ended {
		sess.mu.Unlock()
		s.mu.Unlock()
		return
	}
	w := sess.will
	sess.will = nil
	if sess.willTimer != nil {
		sess.willTimer.Stop()
		sess.willTimer = nil
	}
	sess.clearState()
	sess.ended = true
	sess.deleteRecord()
	sess.flushOps(nil)
	if v, ok := s.sessions.Load(sess.id); ok && v.(*session) == sess {
		s.sessions.Delete(sess.id)
		s.nSess.Add(-1)
	}
	sess.mu.Unlock()
	s.mu.Unlock()
	s.log.Debug("session expired", "client", sess.id)
	if w != nil {
		s.publishWill(w)
	}
}

// publishWill routes a will message as if its client had published it: it
// passes what the client's own messages pass (no $ topic, the publish
// gate), so that a will cannot reach where its client may not publish.
func (s *Server) publishWill(w *Message) {
	m := *w
	m.Received = time.Now()
	if w.ttl > 0 {
		m.Expiry = m.Received.Add(w.ttl)
	}
	info := w.from
	if info == nil { // a will restored from the store
		info = &event.Client{ID: w.ClientID, Username: w.Username}
	}
	// Not cancelled by Shutdown, which publishes the wills of the clients
	// it disconnects; the gate keeps its own deadline.
	log := s.log.With("client", w.ClientID, "will", true)
	// The ACL as it is now (Mosquitto checks a will when it sends it).
	rules := s.rulesFor(w.ClientID, w.Username)
	if ok, _, why := s.admitPublish(context.WithoutCancel(s.ctx), info, rules, &m, log); !ok {
		log.Info("will not published", "topic", w.Topic, "reason", why)
		return
	}
	s.publish(&m, nil)
}
