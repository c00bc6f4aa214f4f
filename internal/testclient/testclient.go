// Package testclient is a small MQTT client built on holdfast's codec, for
// tests that need what command-line clients cannot do: a publisher that keeps
// a persistent session and resends what was not acknowledged, exactly as a
// device does after holdfast restarts, and a subscriber whose every received
// packet can be inspected.
//
// A Client is used by one goroutine at a time, except Close.
package testclient

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"holdfast/internal/packet"
)

// Options configures a connection.
type Options struct {
	// ClientID is sent as is; "" asks the server to assign one.
	ClientID string
	// Version is the protocol version; default V5. V31 sends the 3.1
	// CONNECT (protocol name "MQIsdp").
	Version packet.Version
	// CleanStart is Clean Start (5.0) or Clean Session (3.1.1).
	CleanStart bool
	// SessionExpiry is the Session Expiry Interval in seconds (5.0 only;
	// 0 sends none).
	SessionExpiry uint32
	// KeepAlive is the keep alive in seconds; 0 disables it. The client
	// sends no PINGREQ by itself.
	KeepAlive uint16
	// Username, when not empty, is sent with the User Name flag.
	Username string
	// Password is sent with the Password flag when it and Username are
	// not empty.
	Password string
	// Timeout bounds each operation (dial, one packet written, one
	// awaited); default 10s.
	Timeout time.Duration

	// Properties are added to the CONNECT (5.0 only): Receive Maximum,
	// Topic Alias Maximum, Maximum Packet Size, ... SessionExpiry above
	// takes precedence over Properties.SessionExpiry.
	Properties packet.Properties
	// Will, when set, is the will message (Topic, Payload, QoS, Retain and,
	// for 5.0, Properties with Will Delay and the message properties).
	Will *packet.Publish
}

// Client is one MQTT connection.
type Client struct {
	opts    Options
	conn    net.Conn
	r       *packet.Reader
	w       *bufio.Writer
	buf     []byte
	nextID  uint16
	Connack *packet.Connack // the CONNACK of this connection

	mu      sync.Mutex
	pending []*packet.Publish // publishes received while waiting for something else
}

// ErrRefused is returned by Dial when the CONNACK carries an error code.
var ErrRefused = errors.New("testclient: connection refused")

// Dial connects to addr (host:port) and completes CONNECT/CONNACK.
func Dial(addr string, o Options) (*Client, error) {
	if o.Version == 0 {
		o.Version = packet.V5
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	conn, err := net.DialTimeout("tcp", addr, o.Timeout)
	if err != nil {
		return nil, err
	}
	return DialConn(conn, o)
}

// DialConn completes CONNECT/CONNACK on a connection already open (TLS,
// WebSocket from transport.Dial). The connection is closed on failure.
func DialConn(conn net.Conn, o Options) (*Client, error) {
	if o.Version == 0 {
		o.Version = packet.V5
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	c := &Client{opts: o, conn: conn, r: packet.NewReader(conn, 0), w: bufio.NewWriter(conn)}
	c.r.SetVersion(o.Version)
	cp := &packet.Connect{ // the protocol name goes with the version: "MQIsdp" for 3.1
		Version: o.Version, CleanStart: o.CleanStart,
		KeepAlive: o.KeepAlive, ClientID: o.ClientID,
	}
	if o.Version == packet.V5 {
		cp.Properties = o.Properties
	}
	if o.Will != nil {
		cp.WillFlag, cp.WillQoS, cp.WillRetain = true, o.Will.QoS, o.Will.Retain
		cp.WillTopic, cp.WillPayload = o.Will.Topic, o.Will.Payload
		if o.Version == packet.V5 {
			cp.WillProperties = o.Will.Properties
		}
	}
	if o.Version == packet.V5 && o.SessionExpiry > 0 {
		cp.Properties.SessionExpiry, cp.Properties.HasSessionExpiry = o.SessionExpiry, true
	}
	if o.Username != "" {
		cp.UsernameFlag, cp.Username = true, o.Username
		if o.Password != "" {
			cp.PasswordFlag, cp.Password = true, []byte(o.Password)
		}
	}
	if err := c.send(cp); err != nil {
		conn.Close()
		return nil, err
	}
	p, err := c.read()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("testclient: waiting for CONNACK: %w", err)
	}
	ack, ok := p.(*packet.Connack)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("testclient: got %v instead of CONNACK", p.Type())
	}
	c.Connack = ack
	if ack.ReasonCode != 0 {
		conn.Close()
		return c, fmt.Errorf("%w: %v", ErrRefused, ack.ReasonCode)
	}
	return c, nil
}

// Close closes the connection without DISCONNECT (as a device losing power would).
func (c *Client) Close() error { return c.conn.Close() }

// Disconnect sends DISCONNECT with reason 0 and closes.
func (c *Client) Disconnect() error {
	err := c.send(&packet.Disconnect{})
	c.conn.Close()
	return err
}

func (c *Client) send(p packet.Packet) error {
	var err error
	c.buf, err = packet.Append(c.buf[:0], p, c.opts.Version)
	if err != nil {
		return err
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.opts.Timeout))
	if _, err := c.w.Write(c.buf); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *Client) read() (packet.Packet, error) {
	c.conn.SetReadDeadline(time.Now().Add(c.opts.Timeout))
	return c.r.ReadPacket()
}

// NextID returns the next packet id (1..65535).
func (c *Client) NextID() uint16 {
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

// Publish sends p (a packet id is assigned when QoS > 0 and p.PacketID is 0)
// and, for QoS 1 and 2, waits for the flow to complete (PUBACK, or
// PUBREC/PUBREL/PUBCOMP). It returns the reason code of the PUBACK or PUBREC.
func (c *Client) Publish(p *packet.Publish) (packet.ReasonCode, error) {
	if p.QoS > 0 && p.PacketID == 0 {
		p.PacketID = c.NextID()
	}
	if err := c.send(p); err != nil {
		return 0, err
	}
	switch p.QoS {
	case 0:
		return 0, nil
	case 1:
		a, err := c.await(packet.PUBACK, p.PacketID)
		if err != nil {
			return 0, err
		}
		return a.(*packet.Puback).ReasonCode, nil
	}
	a, err := c.await(packet.PUBREC, p.PacketID)
	if err != nil {
		return 0, err
	}
	rc := a.(*packet.Pubrec).ReasonCode
	if rc.IsError() {
		return rc, nil
	}
	if err := c.Release(p.PacketID); err != nil {
		return rc, &ReleaseError{PacketID: p.PacketID, Err: err}
	}
	return rc, nil
}

// ReleaseError is returned by Publish when a QoS 2 message was received by
// the server (PUBREC came) but PUBREL/PUBCOMP failed. The message must not be
// published again: after reconnecting with the session, Release(PacketID)
// completes the flow (MQTT 5.0 section 4.4).
type ReleaseError struct {
	// PacketID is the id of the QoS 2 message left awaiting PUBREL.
	PacketID uint16
	// Err is why PUBREL or PUBCOMP failed.
	Err error
}

// Error says which packet id could not be released and why.
func (e *ReleaseError) Error() string {
	return fmt.Sprintf("testclient: releasing packet %d: %v", e.PacketID, e.Err)
}

// Unwrap returns the connection error.
func (e *ReleaseError) Unwrap() error { return e.Err }

// Release sends PUBREL for id and waits for PUBCOMP.
func (c *Client) Release(id uint16) error {
	if err := c.send(&packet.Pubrel{PacketID: id}); err != nil {
		return err
	}
	_, err := c.await(packet.PUBCOMP, id)
	return err
}

// await reads until a packet of type t with packet id id arrives, keeping
// publishes that arrive meanwhile for Receive.
func (c *Client) await(t packet.Type, id uint16) (packet.Packet, error) {
	for {
		p, err := c.read()
		if err != nil {
			return nil, err
		}
		if p.Type() == t && packetID(p) == id {
			return p, nil
		}
		switch q := p.(type) {
		case *packet.Publish:
			c.mu.Lock()
			c.pending = append(c.pending, q)
			c.mu.Unlock()
		case *packet.Pubrel:
			if err := c.send(&packet.Pubcomp{PacketID: q.PacketID}); err != nil {
				return nil, err
			}
		case *packet.Disconnect:
			return nil, fmt.Errorf("testclient: server sent DISCONNECT %v", q.ReasonCode)
		}
	}
}

func packetID(p packet.Packet) uint16 {
	switch q := p.(type) {
	case *packet.Puback:
		return q.PacketID
	case *packet.Pubrec:
		return q.PacketID
	case *packet.Pubrel:
		return q.PacketID
	case *packet.Pubcomp:
		return q.PacketID
	case *packet.Suback:
		return q.PacketID
	case *packet.Unsuback:
		return q.PacketID
	}
	return 0
}

// Subscribe subscribes and returns the SUBACK's reason codes.
func (c *Client) Subscribe(subs ...packet.Subscription) ([]packet.ReasonCode, error) {
	id := c.NextID()
	if err := c.send(&packet.Subscribe{PacketID: id, Subscriptions: subs}); err != nil {
		return nil, err
	}
	a, err := c.await(packet.SUBACK, id)
	if err != nil {
		return nil, err
	}
	return a.(*packet.Suback).ReasonCodes, nil
}

// Receive returns the next PUBLISH, acknowledging it as its QoS requires:
// PUBACK for QoS 1, PUBREC for QoS 2. The PUBREL that follows a QoS 2
// message is answered with PUBCOMP by the next Receive, Publish or
// Subscribe call that reads it. It waits at most timeout.
func (c *Client) Receive(timeout time.Duration) (*packet.Publish, error) {
	c.mu.Lock()
	if len(c.pending) > 0 {
		p := c.pending[0]
		c.pending = c.pending[1:]
		c.mu.Unlock()
		return p, c.ack(p)
	}
	c.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		c.conn.SetReadDeadline(deadline)
		p, err := c.r.ReadPacket()
		if err != nil {
			return nil, err
		}
		switch q := p.(type) {
		case *packet.Publish:
			return q, c.ack(q)
		case *packet.Pubrel:
			if err := c.send(&packet.Pubcomp{PacketID: q.PacketID}); err != nil {
				return nil, err
			}
		case *packet.Disconnect:
			return nil, fmt.Errorf("testclient: server sent DISCONNECT %v", q.ReasonCode)
		}
	}
}

func (c *Client) ack(p *packet.Publish) error {
	switch p.QoS {
	case 1:
		return c.send(&packet.Puback{PacketID: p.PacketID})
	case 2:
		return c.send(&packet.Pubrec{PacketID: p.PacketID})
	}
	return nil
}

// Send writes one packet as it is, without waiting for anything: for
// pipelining and for packets a well-behaved client would not send.
func (c *Client) Send(p packet.Packet) error { return c.send(p) }

// SendRaw writes bytes as they are (malformed packets).
func (c *Client) SendRaw(b []byte) error {
	c.conn.SetWriteDeadline(time.Now().Add(c.opts.Timeout))
	_, err := c.conn.Write(b)
	return err
}

// ReadPacket returns the next packet of any type, waiting at most timeout,
// without acknowledging anything. Publishes kept by earlier calls come
// first.
func (c *Client) ReadPacket(timeout time.Duration) (packet.Packet, error) {
	c.mu.Lock()
	if len(c.pending) > 0 {
		p := c.pending[0]
		c.pending = c.pending[1:]
		c.mu.Unlock()
		return p, nil
	}
	c.mu.Unlock()
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	return c.r.ReadPacket()
}

// Conn returns the underlying connection.
func (c *Client) Conn() net.Conn { return c.conn }
