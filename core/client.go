package core

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/core/rawio"
)

// client is one network connection. Its reader goroutine (serve) decodes and
// handles packets; its writer goroutine (writeLoop) drains the outbound
// queue. The session outlives it.
type client struct {
	srv  *Server
	conn net.Conn
	ln   *listenerState
	log  *slog.Logger

	reader *packet.Reader
	out    *outQueue
	// wmu is held by whoever writes to the socket: the writer for a batch,
	// or a direct write (see direct.go).
	wmu sync.Mutex
	// raw is the socket for raw reads and writes (plain TCP only; see
	// direct.go), rw and rr their state.
	raw syscall.RawConn
	rw  *rawio.Writer
	rr  *rawio.Reader
	// direct: the message being handled may be written to its subscribers
	// and acknowledged by the reader itself (reader goroutine only).
	direct bool

	// Set during CONNECT, read-only afterwards.
	id          string
	version     byte
	keepAlive   time.Duration
	cleanStart  bool
	info        *event.Client
	sess        *session
	window      int    // outbound in-flight window
	maxOut      uint32 // largest packet the client accepts (0: no limit)
	connectedAt time.Time
	connExpiry  uint32 // session expiry interval asked in CONNECT (v5)
	// dlMu orders the reader's keep-alive deadlines with the closing one.
	dlMu    sync.Mutex
	closing bool
	// noProblemInfo: the v5 client asked for no reason strings on acks.
	noProblemInfo bool
	// auth: the client authenticated with an MQTT 5 authentication method
	// (see enhauth.go); nil otherwise.
	auth *authState
	// builtin: the built-in user table accepted the client, with this
	// hash; a reload that changes it disconnects the client (SetUsers).
	builtin atomic.Pointer[builtinLogin]

	// Reader goroutine state.
	aliases   map[uint16]string
	connected atomic.Bool
	will      *Message
	willDelay uint32

	closed     chan struct{}
	writerDone chan struct{}
	// done is closed when finish has released the session.
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	// takenOver is set when another connection took the session.
	takenOver atomic.Bool
	// graceful: the client sent DISCONNECT.
	graceful   bool
	disconnect packet.ReasonCode
	sentDisc   atomic.Bool
}

func newClient(s *Server, conn net.Conn, ln *listenerState) *client {
	c := &client{
		srv:        s,
		conn:       conn,
		ln:         ln,
		out:        newOutQueue(),
		raw:        rawio.Of(conn),
		closed:     make(chan struct{}),
		writerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	if c.raw != nil {
		c.rr, c.rw = rawio.NewReader(c.raw, nil), rawio.NewWriter(c.raw)
	}
	c.reader = packet.NewReader(&deadlineReader{c: c})
	c.reader.MaxSize = s.opts.MaxPacketSize
	// handle keeps no *Publish or *Ack beyond the call.
	c.reader.Reuse = true
	c.log = s.log.With("remote", conn.RemoteAddr().String(), "listener", ln.opts.Name)
	return c
}

// closeWith starts closing the connection with err as the reason. The writer
// flushes control packets already queued and closes the socket.
func (c *client) closeWith(err error) {
	c.closeOnce.Do(func() {
		c.closeErr = err
		_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.out.close()
		close(c.closed)
	})
}

// kick disconnects the client from another goroutine: MQTT 5 clients get a
// DISCONNECT with code first.
func (c *client) kick(code packet.ReasonCode, reason string) {
	c.sendDisconnect(code, "")
	c.closeWith(errKick{code: code, reason: reason})
}

type errKick struct {
	code   packet.ReasonCode
	reason string
}

func (e errKick) Error() string { return e.reason }

// sendDisconnect queues a DISCONNECT for MQTT 5 clients once connected
// [MQTT-4.13.1-1] (before CONNACK, a CONNACK carries the error instead).
func (c *client) sendDisconnect(code packet.ReasonCode, reason string) {
	if c.sentDisc.Load() {
		return
	}
	c.out.mu.Lock()
	// Only after the CONNACK [MQTT-3.14.0-1] (connacked, under this lock,
	// also makes c.version safe to read here), and only once.
	ok := c.out.connacked && !c.out.closed && c.version == packet.V5 && !c.sentDisc.Swap(true)
	if ok {
		d := &packet.Disconnect{ReasonCode: code}
		d.Props.ReasonString = reason
		c.out.items = append(c.out.items, outItem{buf: d.Append(nil, packet.V5)})
	}
	c.out.mu.Unlock()
	if !ok {
		return
	}
	select {
	case c.out.signal <- struct{}{}:
	default:
	}
}

// sendConnack queues the CONNACK of an accepted connection and, in the same
// step, lets a DISCONNECT follow it: a kick from another goroutine (an
// administrator, a reload that revokes the user) sends its DISCONNECT after
// the CONNACK, never before it, and does not miss it.
func (c *client) sendConnack(ack *packet.Connack) {
	it := outItem{buf: ack.Append(nil, c.version)}
	c.out.mu.Lock()
	if !c.out.closed {
		c.out.items = append(c.out.items, it)
		c.out.connacked = true
	}
	c.out.mu.Unlock()
	select {
	case c.out.signal <- struct{}{}:
	default:
	}
}

// sendControl queues a control packet (acks, CONNACK, SUBACK, PINGRESP).
func (c *client) sendControl(p packet.Packet) { c.sendControlFrom(p, false) }

// sendControlFrom is sendControl; direct: the caller is the client's reader
// at light load, which may write it itself (see direct.go).
func (c *client) sendControlFrom(p packet.Packet, direct bool) {
	var it outItem
	// Encoding may outgrow ctl on the way (and move), even for a short result.
	if b := p.Append(it.ctl[:0], c.version); len(b) <= len(it.ctl) {
		it.ctlLen = uint8(copy(it.ctl[:], b))
	} else {
		it.buf = b
	}
	c.sendItem(&it, direct)
}

// sendAck is sendControlFrom for an acknowledgement (kind, packet id,
// reason code, MQTT 5 reason string), which goes out once per QoS 1 and 2
// message: it is encoded straight into the item, on the stack (no
// allocation per message, and no Ack in the callers' frames).
func (c *client) sendAck(kind packet.Type, pid uint16, code packet.ReasonCode, reason string, direct bool) {
	var enc [8]byte
	b := packet.AppendAck(enc[:0], kind, pid, code, reason, c.version)
	var it outItem
	if len(b) <= len(it.ctl) {
		it.ctlLen = uint8(copy(it.ctl[:], b))
	} else {
		// With a reason string. Copied: keeping b could be keeping enc,
		// which would move enc to the heap for every call.
		it.buf = append([]byte(nil), b...)
	}
	c.sendItem(&it, direct)
}

// sendItem writes it directly when allowed and possible, or queues it.
func (c *client) sendItem(it *outItem, direct bool) {
	if direct && c.sendDirect(it) {
		return
	}
	c.out.push(*it, 0, 0)
}

// sendMessage queues a PUBLISH for delivery d. enc is a shared encoding for
// this client's protocol level, QoS and retain flag, or nil to encode here.
// It returns false when the message is larger than the client accepts.
func (c *client) sendMessage(d delivery, enc []byte, pid uint16) bool {
	return c.sendMessageFrom(d, enc, pid, nil, false)
}

// sendMessageFrom is sendMessage for a message published by from, which is
// never made to wait for room in its own queue. direct: the caller is a
// reader that may write it to the socket itself (see sendDirect).
func (c *client) sendMessageFrom(d delivery, enc []byte, pid uint16, from *client, direct bool) bool {
	if enc == nil {
		enc = encodeDelivery(d, c.version, false, time.Now())
	}
	if !c.fits(enc, d.msg.Topic) {
		return false
	}
	it := outItem{buf: enc, qos0: d.qos == 0, qos: d.qos}
	if d.qos > 0 {
		it.pid = pid
		it.pidOff = int32(packet.PacketIDOffset(enc))
	}
	wait := c.srv.opts.StallTimeout
	if from == c {
		wait = 0
	}
	if direct && c.sendDirect(&it) {
		// written, or the connection failed and is closing
	} else if !c.out.push(it, c.srv.opts.MaxQueuedQoS0, wait) {
		c.srv.stats.DroppedQoS0Full.Add(1)
		c.srv.logDrop("client QoS 0 queue full (max_queued_qos0)", c.id, d.msg.Topic)
		return true
	}
	if c.srv.bus.Wants(event.Deliver) {
		c.srv.bus.Emit(&event.Event{Kind: event.Deliver, Time: time.Now(), Client: c.info, Message: d.msg.eventMessage()})
	}
	return true
}

// fits reports whether an encoded message is within the client's maximum
// packet size, counting and logging the drop when it is not.
func (c *client) fits(enc []byte, topicName string) bool {
	if c.maxOut > 0 && uint32(len(enc)) > c.maxOut {
		c.srv.stats.DroppedTooLarge.Add(1)
		c.srv.logDrop("larger than the subscriber's maximum packet size", c.id, topicName)
		return false
	}
	return true
}

// resendMessage re-sends an in-flight QoS 1/2 message with DUP set.
func (c *client) resendMessage(m *inflightMsg) bool {
	enc := encodeDelivery(m.delivery, c.version, true, time.Now())
	if c.maxOut > 0 && uint32(len(enc)) > c.maxOut {
		c.srv.stats.DroppedTooLarge.Add(1)
		return false
	}
	c.out.push(outItem{buf: enc, pid: m.pid, pidOff: int32(packet.PacketIDOffset(enc)), qos: m.qos}, 0, 0)
	return true
}

// encodeDelivery encodes d's PUBLISH with packet identifier 0 (patched later).
func encodeDelivery(d delivery, v byte, dup bool, now time.Time) []byte {
	p := packet.Publish{Dup: dup, QoS: d.qos, Retain: d.retain, Topic: d.msg.Topic, Payload: d.msg.Payload}
	if v == packet.V5 {
		p.Props = d.msg.forwardProps(now, d.subIDs)
	}
	return p.Append(make([]byte, 0, p.Size(v)), v)
}

// serve runs the connection: CONNECT, then packets until the end.
func (c *client) serve() {
	s := c.srv
	s.addClient(c)
	go c.writeLoop()
	err := c.run()
	// Release the session before the client can see the connection end, so
	// that a reconnect right after finds it offline.
	c.finish(err)
	c.closeWith(err)
	<-c.writerDone
	c.drainAndClose()
	s.removeClient(c)
	c.ln.conns.Add(-1)
}

// drainAndClose reads and discards what the client still sends for a
// moment, so that closing does not reset the connection before the client
// has read our last packets, then closes it.
func (c *client) drainAndClose() {
	c.setCloseDeadline(500 * time.Millisecond)
	var buf [4096]byte
	for total := 0; total < 256<<10; {
		n, err := c.conn.Read(buf[:])
		total += n
		if err != nil {
			break
		}
	}
	c.conn.Close()
}

func (c *client) run() error {
	s := c.srv
	_ = c.conn.SetReadDeadline(time.Now().Add(s.opts.ConnectTimeout))
	first, err := c.reader.PeekHeader()
	if err != nil {
		return errNoConnect{err}
	}
	if packet.Type(first>>4) != packet.CONNECT { // [MQTT-3.1.0-1]
		return errNoConnect{fmt.Errorf("first packet is %s, not CONNECT", packet.Type(first>>4))}
	}
	header, body, size, err := c.reader.ReadRaw()
	s.stats.BytesReceived.Add(uint64(size))
	if err != nil {
		if perr, ok := err.(*packet.Error); ok && perr.Code == packet.PacketTooLarge && header>>4 == byte(packet.CONNECT) {
			// The level is unknown until the body is read: answer in 3.1.1 form.
			c.version = packet.V311
			c.sendControl(&packet.Connack{ReasonCode: packet.ServerUnavailable})
		}
		return errNoConnect{err}
	}
	p, err := packet.Decode(header, body, 0)
	if err != nil {
		c.refuseMalformedConnect(body, err)
		return err
	}
	cp := p.(*packet.Connect)
	c.reader.Version = cp.ProtocolLevel
	c.version = cp.ProtocolLevel
	if err := c.handleConnect(cp); err != nil {
		return err
	}
	return c.readLoop()
}

type errNoConnect struct{ err error }

func (e errNoConnect) Error() string { return "before CONNECT: " + e.err.Error() }

// refuseMalformedConnect answers a CONNECT that failed to decode with a
// CONNACK in the client's own format where the protocol could be read.
func (c *client) refuseMalformedConnect(body []byte, err error) {
	code := packet.CodeOf(err)
	name, level := peekProtocol(body)
	switch {
	case code == packet.UnsupportedProtocolVersion:
		// [MQTT-3.1.2-2]: 3.1.1 return code 1, or 0x84 for a 5.0 client.
		c.version = packet.V311
		if level == packet.V5 {
			c.version = packet.V5
		}
		c.sendControl(&packet.Connack{ReasonCode: packet.UnsupportedProtocolVersion})
	case name == "MQTT" && level == packet.V5:
		// A malformed 5.0 CONNECT gets CONNACK with the reason [MQTT-4.13.1-1].
		c.version = packet.V5
		c.sendControl(&packet.Connack{ReasonCode: code})
	}
	// 3.1/3.1.1: close without answering [MQTT-3.1.4-1].
}

// peekProtocol returns the protocol name and level of a CONNECT body.
func peekProtocol(body []byte) (string, byte) {
	if len(body) < 2 {
		return "", 0
	}
	n := int(body[0])<<8 | int(body[1])
	if len(body) < 2+n+1 {
		return "", 0
	}
	return string(body[2 : 2+n]), body[2+n]
}

// readLoop handles packets after CONNECT until an error or DISCONNECT.
func (c *client) readLoop() error {
	s := c.srv
	for {
		select {
		case <-c.closed:
			// Kicked (take-over, shutdown, admin): stop handling packets.
			return c.closeErr
		default:
		}
		p, size, err := c.reader.ReadPacket()
		s.stats.BytesReceived.Add(uint64(size))
		if err != nil {
			return c.readError(err)
		}
		if err := c.handle(p); err != nil {
			if err == errDisconnected {
				return nil
			}
			return c.protocolError(err)
		}
	}
}

var errDisconnected = errors.New("client sent DISCONNECT")

// errKeepAlive is the reason for closing a silent client.
var errKeepAlive = errors.New("keep alive timeout")

func (c *client) readError(err error) error {
	var perr *packet.Error
	switch {
	case errors.As(err, &perr):
		return c.protocolError(err)
	case isTimeout(err):
		select {
		case <-c.closed:
			return err
		default:
		}
		c.sendDisconnect(packet.KeepAliveTimeout, "")
		return errKeepAlive
	case err == io.EOF:
		return errors.New("connection closed by client without DISCONNECT")
	}
	return err
}

// protocolError reports err to an MQTT 5 client with DISCONNECT and its
// reason code [MQTT-4.13.1-1], and returns it as the reason to close.
func (c *client) protocolError(err error) error {
	code := packet.CodeOf(err)
	if code < 0x80 {
		code = packet.UnspecifiedError
	}
	msg := ""
	if pe, ok := err.(*packet.Error); ok {
		msg = pe.Msg
	}
	c.sendDisconnect(code, msg)
	return err
}

func (c *client) handle(p packet.Packet) error {
	switch p := p.(type) {
	case *packet.Publish:
		return c.handlePublish(p)
	case *packet.Ack:
		return c.handleAck(p)
	case *packet.Subscribe:
		return c.handleSubscribe(p)
	case *packet.Unsubscribe:
		return c.handleUnsubscribe(p)
	case *packet.Pingreq:
		c.sendControl(&packet.Pingresp{})
		return nil
	case *packet.Disconnect:
		return c.handleDisconnect(p)
	case *packet.Connect:
		return &packet.Error{Code: packet.ProtocolError, Msg: "second CONNECT"} // [MQTT-3.1.0-2]
	case *packet.Auth:
		return c.handleAuth(p)
	default:
		// CONNACK, SUBACK, UNSUBACK, PINGRESP are server-to-client only.
		return &packet.Error{Code: packet.ProtocolError, Msg: fmt.Sprintf("%s sent by a client", p.Type())}
	}
}

func (c *client) handleAck(a *packet.Ack) error {
	switch a.Kind {
	case packet.PUBREL:
		pid, code := a.PacketID, packet.Success
		if !c.sess.releaseInbound(pid) {
			code = packet.PacketIdentifierNotFound
		} else if s := c.srv; s.syncAlways {
			// PUBCOMP once the id is forgotten on disk too: otherwise, after a
			// crash, a new message reusing the id would pass for a resend.
			s.journal.AfterCommit(func() { c.sendAck(packet.PUBCOMP, pid, packet.Success, "", false) })
			return nil
		}
		c.sendAck(packet.PUBCOMP, pid, code, "", false)
		return nil
	default:
		if !c.sess.acked(a.Kind, a.PacketID, a.ReasonCode) {
			if a.Kind == packet.PUBREC {
				c.sendAck(packet.PUBREL, a.PacketID, packet.PacketIdentifierNotFound, "", false)
			}
			// An unknown PUBACK/PUBCOMP (e.g. after a session was cleared) is ignored.
		}
		return nil
	}
}

func (c *client) handleDisconnect(d *packet.Disconnect) error {
	if c.version == packet.V5 {
		if d.Props.SessionExpiry != nil {
			if c.connExpiry == 0 && *d.Props.SessionExpiry != 0 { // [MQTT-3.14.2-2]... a protocol error
				return &packet.Error{Code: packet.ProtocolError, Msg: "DISCONNECT sets a session expiry after CONNECT set 0"}
			}
			c.sess.mu.Lock()
			c.sess.expiry = c.srv.capExpiry(*d.Props.SessionExpiry)
			c.sess.mu.Unlock()
		}
		c.disconnect = d.ReasonCode
	}
	c.graceful = true
	return errDisconnected
}

// tlsInfo describes the TLS side of conn, or nil.
func tlsInfo(conn net.Conn) *event.TLS {
	type connState interface{ ConnectionState() tls.ConnectionState }
	tc, ok := conn.(connState)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	info := &event.TLS{}
	if len(st.PeerCertificates) > 0 {
		cert := st.PeerCertificates[0]
		info.CN = cert.Subject.CommonName
		info.SANs = append(info.SANs, cert.DNSNames...)
		info.SANs = append(info.SANs, cert.EmailAddresses...)
		for _, u := range cert.URIs {
			info.SANs = append(info.SANs, u.String())
		}
		info.Verified = len(st.VerifiedChains) > 0
	}
	return info
}

// deadlineReader reads from the client's socket and moves the keep-alive
// read deadline only when it must read from the network, and at most four
// times a second: setting a deadline for every packet costs more than the
// packet. The deadline is 1.5 x keep alive after the last read, plus the
// quarter second of slack, so a client is never cut off early.
type deadlineReader struct {
	c    *client
	last time.Time
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	c := d.c
	if ka := c.keepAlive; ka > 0 {
		now := time.Now()
		if now.Sub(d.last) >= 250*time.Millisecond {
			d.last = now
			c.dlMu.Lock()
			if !c.closing {
				_ = c.conn.SetReadDeadline(now.Add(ka*3/2 + 250*time.Millisecond))
			}
			c.dlMu.Unlock()
		}
	}
	if c.rr != nil {
		return c.rr.Read(p)
	}
	return c.conn.Read(p)
}

// setCloseDeadline bounds the reader's last wait once the connection is
// closing; the deadline reader leaves it alone from then on.
func (c *client) setCloseDeadline(d time.Duration) {
	c.dlMu.Lock()
	c.closing = true
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	c.dlMu.Unlock()
}
