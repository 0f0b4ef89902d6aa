package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/tidemq/tide/core/packet"
	"github.com/tidemq/tide/core/rawio"
)

// dialOptions say how to reach a broker and what to put in CONNECT.
type dialOptions struct {
	host      string
	tls       *tls.Config // nil: plain TCP
	ws        bool
	wsPath    string
	version   byte
	keepAlive uint16 // seconds
	username  string
	password  string
	timeout   time.Duration // dial + CONNACK
	quickAck  bool
}

// dialNet opens the transport: TCP, TLS, WebSocket or WebSocket over TLS.
func dialNet(ctx context.Context, o dialOptions) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	d := &net.Dialer{}
	if o.ws {
		scheme := "ws"
		if o.tls != nil {
			scheme = "wss"
		}
		hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: o.tls}}
		wc, _, err := websocket.Dial(ctx, scheme+"://"+o.host+o.wsPath, &websocket.DialOptions{
			HTTPClient:   hc,
			Subprotocols: []string{"mqtt"},
		})
		if err != nil {
			return nil, err
		}
		// MQTT frames its own packets; a WebSocket message may carry any
		// number of them, so the per-message limit must not apply.
		wc.SetReadLimit(-1)
		return websocket.NetConn(context.Background(), wc, websocket.MessageBinary), nil
	}
	nc, err := d.DialContext(ctx, "tcp", o.host)
	if err != nil {
		return nil, err
	}
	if o.tls == nil {
		return nc, nil
	}
	tc := tls.Client(nc, o.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

// connackInfo is what the broker told us in CONNACK that changes how we talk.
type connackInfo struct {
	receiveMax int    // v5 Receive Maximum (0: not limited by the broker)
	keepAlive  uint16 // the keep alive to honour (the broker's for v5 if given)
}

// handshake sends CONNECT on nc and waits, through r, for a successful
// CONNACK.
func handshake(nc net.Conn, r *packet.Reader, o dialOptions, clientID string) (connackInfo, error) {
	var info connackInfo
	if err := nc.SetDeadline(time.Now().Add(o.timeout)); err != nil {
		return info, err
	}
	cp := &packet.Connect{
		ProtocolLevel: o.version,
		CleanStart:    true,
		KeepAlive:     o.keepAlive,
		ClientID:      clientID,
	}
	if o.username != "" {
		cp.UsernameFlag, cp.Username = true, o.username
	}
	if o.password != "" {
		cp.PasswordFlag, cp.Password = true, []byte(o.password)
		cp.UsernameFlag = true
	}
	if _, err := nc.Write(packet.Encode(cp, o.version)); err != nil {
		return info, fmt.Errorf("send CONNECT: %w", err)
	}
	p, _, err := r.ReadPacket()
	if err != nil {
		return info, fmt.Errorf("wait for CONNACK: %w", err)
	}
	ack, ok := p.(*packet.Connack)
	if !ok {
		return info, fmt.Errorf("expected CONNACK, got %s", p.Type())
	}
	if ack.ReasonCode.IsError() || (o.version != packet.V5 && ack.ReasonCode != packet.Success) {
		return info, fmt.Errorf("broker refused the connection: %v", ack.ReasonCode)
	}
	info.keepAlive = o.keepAlive
	if rm := ack.Props.ReceiveMaximum; rm != nil {
		info.receiveMax = int(*rm)
	}
	if ka := ack.Props.ServerKeepAlive; ka != nil {
		info.keepAlive = *ka
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return info, err
	}
	return info, nil
}

// conn is one benchmark client connection: a reader goroutine, and a
// buffered writer shared by the owner (who publishes) and the reader (who
// acknowledges). Neither ever waits for the other to write: the reader and
// the pinger hand bytes over through pend and whoever holds wmu writes
// them, so a publisher blocked on a full socket never stops the reader
// from draining the broker's side (which would deadlock both).
type conn struct {
	nc      net.Conn
	r       *packet.Reader
	version byte
	info    connackInfo

	wmu     sync.Mutex // guards w and scratch
	w       *bufio.Writer
	ackMu   sync.Mutex // guards pend
	pend    []byte
	spare   []byte
	pending atomic.Bool

	// acks is filled by the reader goroutine only and handed to the
	// writer just before the reader would block on the socket, so the
	// acknowledgements of one read burst leave in one write.
	acks []byte

	// sub records received messages; nil for a pure publisher.
	raw   syscall.RawConn // TLS over TCP: for TCP_QUICKACK; nil when off or not TCP
	rawIn *rawio.Reader   // plain TCP: raw reads (see dialMQTT)
	sub   *subscriber
	// pub is notified of acknowledgements; nil for a pure subscriber.
	pub *publisher

	closing  atomic.Bool
	failOnce sync.Once
	err      error
	dead     chan struct{}
	readDone chan struct{}
	protoErr atomic.Uint64 // acknowledgements for unknown ids and the like
}

// flushingReader hands the reader's pending acknowledgements to the writer
// before each read from the socket.
type flushingReader struct{ c *conn }

func (f flushingReader) Read(p []byte) (int, error) {
	c := f.c
	if len(c.acks) > 0 {
		c.send(c.acks)
		c.acks = c.acks[:0]
	}
	if c.rawIn != nil {
		return c.rawIn.Read(p) // TCP_QUICKACK is set by the reader
	}
	n, err := c.nc.Read(p)
	if c.raw != nil {
		c.raw.Control(setQuickAck)
	}
	return n, err
}

// tcpOf returns the TCP connection under nc, if any.
func tcpOf(nc net.Conn) *net.TCPConn {
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	tc, _ := nc.(*net.TCPConn)
	return tc
}

// dialMQTT connects and completes the MQTT handshake. wbuf sizes the write
// buffer: large for publishers, small for subscribers that only send acks.
func dialMQTT(ctx context.Context, o dialOptions, clientID string, wbuf int) (*conn, error) {
	nc, err := dialNet(ctx, o)
	if err != nil {
		return nil, err
	}
	c := &conn{
		nc:       nc,
		version:  o.version,
		dead:     make(chan struct{}),
		readDone: make(chan struct{}),
	}
	// Plain TCP is read and written with raw system calls, as the broker
	// does: the generator's own scheduling overhead otherwise competes
	// with the broker for the cores (see core/rawio).
	var out io.Writer = nc
	if raw := rawio.Of(nc); raw != nil {
		var after func(uintptr)
		if o.quickAck {
			after = setQuickAck
		}
		c.rawIn = rawio.NewReader(raw, after)
		out = rawio.NewWriter(raw)
	} else if tc := tcpOf(nc); tc != nil && o.quickAck {
		if c.raw, err = tc.SyscallConn(); err != nil {
			nc.Close()
			return nil, err
		}
	}
	c.w = bufio.NewWriterSize(out, wbuf)
	c.r = packet.NewReader(flushingReader{c})
	c.r.Version = o.version
	if c.info, err = handshake(nc, c.r, o, clientID); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// subscribe sends SUBSCRIBE and waits for the SUBACK, before the reader
// goroutine starts. It returns the granted QoS.
func (c *conn) subscribe(filter string, qos byte, timeout time.Duration) (byte, error) {
	sp := &packet.Subscribe{PacketID: 1, Subs: []packet.SubOption{{Filter: filter, QoS: qos}}}
	if err := c.nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	defer c.nc.SetDeadline(time.Time{})
	if _, err := c.nc.Write(packet.Encode(sp, c.version)); err != nil {
		return 0, fmt.Errorf("send SUBSCRIBE: %w", err)
	}
	p, _, err := c.r.ReadPacket()
	if err != nil {
		return 0, fmt.Errorf("wait for SUBACK: %w", err)
	}
	sa, ok := p.(*packet.Suback)
	if !ok {
		return 0, fmt.Errorf("expected SUBACK, got %s", p.Type())
	}
	if len(sa.Codes) != 1 {
		return 0, fmt.Errorf("SUBACK with %d codes for 1 filter", len(sa.Codes))
	}
	if sa.Codes[0].IsError() {
		return 0, fmt.Errorf("broker refused the subscription to %q: %v", filter, sa.Codes[0])
	}
	return byte(sa.Codes[0]), nil
}

// start runs the reader goroutine.
func (c *conn) start() { go c.readLoop() }

// fail records the first error and closes the connection.
func (c *conn) fail(err error) {
	c.failOnce.Do(func() {
		if !c.closing.Load() {
			c.err = err
		}
		close(c.dead)
		c.nc.Close()
	})
}

// failure returns the error that ended the connection, if it was not ended
// on purpose. Call only after readDone.
func (c *conn) failure() error { return c.err }

// close sends DISCONNECT (best effort) and closes.
func (c *conn) close() {
	c.closing.Store(true)
	select {
	case <-c.dead:
		return
	default:
	}
	c.send([]byte{byte(packet.DISCONNECT) << 4, 0})
	c.fail(nil)
}

// send hands bytes to the writer and writes them now if nobody else holds
// the writer; otherwise the holder does before it lets go.
func (c *conn) send(b []byte) {
	c.ackMu.Lock()
	c.pend = append(c.pend, b...)
	c.ackMu.Unlock()
	c.pending.Store(true)
	c.kick()
}

// kick writes pending bytes unless another goroutine holds the writer.
// The loop closes the race where bytes arrive just after the holder's last
// check: whoever unlocks looks again.
func (c *conn) kick() {
	for c.pending.Load() && c.wmu.TryLock() {
		c.drainLocked()
		c.wmu.Unlock()
	}
}

// drainLocked writes and flushes pending bytes; wmu is held.
func (c *conn) drainLocked() {
	c.ackMu.Lock()
	c.pend, c.spare = c.spare[:0], c.pend
	c.pending.Store(false)
	c.ackMu.Unlock()
	if len(c.spare) == 0 {
		return
	}
	if _, err := c.w.Write(c.spare); err != nil {
		c.fail(err)
		return
	}
	if err := c.w.Flush(); err != nil {
		c.fail(err)
	}
}

// readLoop reads until the connection ends, recording messages and
// acknowledging them, and releasing the publisher's window on acks.
func (c *conn) readLoop() {
	defer close(c.readDone)
	for {
		h, body, _, err := c.r.ReadRaw()
		if err != nil {
			c.fail(fmt.Errorf("read: %w", err))
			return
		}
		switch packet.Type(h >> 4) {
		case packet.PUBLISH:
			if err := c.onPublish(h, body); err != nil {
				c.fail(err)
				return
			}
		case packet.PUBACK, packet.PUBCOMP:
			id, code, ok := ackFields(body, c.version)
			if !ok {
				c.fail(fmt.Errorf("malformed %s", packet.Type(h>>4)))
				return
			}
			c.release(id, code)
		case packet.PUBREC:
			id, code, ok := ackFields(body, c.version)
			if !ok {
				c.fail(errors.New("malformed PUBREC"))
				return
			}
			if code >= 0x80 {
				// A refused QoS 2 message ends here [MQTT-4.3.3-...]: no PUBREL.
				c.release(id, code)
				continue
			}
			c.acks = append(c.acks, byte(packet.PUBREL)<<4|0x02, 2, byte(id>>8), byte(id))
		case packet.PUBREL:
			id, _, ok := ackFields(body, c.version)
			if !ok {
				c.fail(errors.New("malformed PUBREL"))
				return
			}
			c.acks = append(c.acks, byte(packet.PUBCOMP)<<4, 2, byte(id>>8), byte(id))
		case packet.PINGRESP:
		case packet.DISCONNECT:
			reason := "no reason code"
			if len(body) > 0 {
				reason = packet.ReasonCode(body[0]).Error()
			}
			c.fail(fmt.Errorf("broker sent DISCONNECT: %s", reason))
			return
		default:
			c.fail(fmt.Errorf("unexpected %s from the broker", packet.Type(h>>4)))
			return
		}
	}
}

// ackFields reads the packet id and reason code of PUBACK..PUBCOMP.
func ackFields(body []byte, v byte) (id uint16, code byte, ok bool) {
	if len(body) < 2 {
		return 0, 0, false
	}
	id = uint16(body[0])<<8 | uint16(body[1])
	if v == packet.V5 && len(body) > 2 {
		code = body[2]
	}
	return id, code, true
}

// onPublish parses a PUBLISH in place (no allocation), records it and
// queues its acknowledgement.
func (c *conn) onPublish(h byte, body []byte) error {
	qos := (h >> 1) & 3
	if qos == 3 || len(body) < 2 {
		return errors.New("malformed PUBLISH")
	}
	i := 2 + (int(body[0])<<8 | int(body[1]))
	var id uint16
	if qos > 0 {
		if len(body) < i+2 {
			return errors.New("malformed PUBLISH")
		}
		id = uint16(body[i])<<8 | uint16(body[i+1])
		i += 2
	}
	if c.version == packet.V5 {
		n, k := uvarint(body[i:])
		if k == 0 || len(body) < i+k+n {
			return errors.New("malformed PUBLISH properties")
		}
		i += k + n
	}
	if len(body) < i {
		return errors.New("malformed PUBLISH")
	}
	if c.sub != nil {
		c.sub.record(body[i:], qos, nowNanos())
	}
	switch qos {
	case 1:
		c.acks = append(c.acks, byte(packet.PUBACK)<<4, 2, byte(id>>8), byte(id))
	case 2:
		c.acks = append(c.acks, byte(packet.PUBREC)<<4, 2, byte(id>>8), byte(id))
	}
	return nil
}

// uvarint decodes an MQTT variable byte integer; k is 0 when malformed.
func uvarint(b []byte) (n, k int) {
	mul := 1
	for k < len(b) && k < 4 {
		d := b[k]
		n += int(d&0x7F) * mul
		k++
		if d&0x80 == 0 {
			return n, k
		}
		mul <<= 7
	}
	return 0, 0
}

// release ends the flow of an outgoing QoS 1/2 message.
func (c *conn) release(id uint16, code byte) {
	if c.pub == nil || !c.pub.ids.clear(id) {
		c.protoErr.Add(1)
		return
	}
	if code >= 0x80 {
		c.pub.rejected.Add(1)
	} else {
		c.pub.acked.Add(1)
	}
	<-c.pub.sem
}

// idSet tracks the packet identifiers in flight, shared by the publisher
// (set) and the reader (clear) without a lock.
type idSet [1024]atomic.Uint64

func (s *idSet) set(id uint16) bool {
	bit := uint64(1) << (id & 63)
	return s[id>>6].Or(bit)&bit == 0
}

func (s *idSet) clear(id uint16) bool {
	bit := uint64(1) << (id & 63)
	return s[id>>6].And(^bit)&bit != 0
}

// epoch is the origin of the monotonic timestamps carried in payloads.
var epoch = time.Now()

// nowNanos reads the monotonic clock.
func nowNanos() int64 { return int64(time.Since(epoch)) }
