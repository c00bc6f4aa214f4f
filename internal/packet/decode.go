package packet

import (
	"bufio"
	"errors"
	"io"

	"holdfast/internal/topic"
)

// Reader reads MQTT packets from a stream. A server-side Reader starts with
// no version and learns it from the CONNECT it reads first; a client-side
// Reader is told the version with SetVersion before it reads CONNACK.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	r       *bufio.Reader
	version Version
	max     uint32
}

// NewReader returns a Reader on r that refuses packets larger than
// maxPacketSize bytes (whole packet, fixed header included); 0 means the
// protocol's maximum. r is wrapped in a bufio.Reader unless it is one.
func NewReader(r io.Reader, maxPacketSize uint32) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 4096)
	}
	rd := &Reader{r: br}
	rd.SetMaxPacketSize(maxPacketSize)
	return rd
}

// SetVersion sets the protocol version the following packets are decoded
// with. A client sets it before reading CONNACK.
func (r *Reader) SetVersion(v Version) { r.version = v }

// Version returns the protocol version in use: the one set, or the one of the
// CONNECT read; 0 before either.
func (r *Reader) Version() Version { return r.version }

// SetMaxPacketSize changes the size limit; 0 means the protocol's maximum.
func (r *Reader) SetMaxPacketSize(n uint32) {
	if n == 0 || n > MaxPacketSize {
		n = MaxPacketSize
	}
	r.max = n
}

// ReadPacket reads and decodes the next packet. A protocol violation is
// returned as an *Error carrying the reason code for the peer; the stream is
// then out of step and the connection must be closed. Errors of the
// underlying reader are returned as they are (io.EOF at a packet boundary,
// io.ErrUnexpectedEOF inside a packet).
//
// The size limit is checked on the fixed header, before the body is read or
// any memory is allocated for it. Before a version is known (server side),
// only CONNECT is accepted; after, CONNECT is refused as a Protocol Error.
func (r *Reader) ReadPacket() (Packet, error) {
	first, err := r.r.ReadByte()
	if err != nil {
		return nil, err
	}
	length, hdr := 0, 1
	for shift := 0; ; shift += 7 {
		c, err := r.r.ReadByte()
		if err != nil {
			return nil, unexpected(err)
		}
		hdr++
		length |= int(c&0x7F) << shift
		if c&0x80 == 0 {
			if hdr > 2 && c == 0 {
				return nil, Errorf(MalformedPacket, "remaining length not in its shortest form")
			}
			break
		}
		if hdr == 5 {
			return nil, Errorf(MalformedPacket, "remaining length longer than 4 bytes")
		}
	}
	if uint64(hdr)+uint64(length) > uint64(r.max) {
		return nil, Errorf(PacketTooLarge, "%s of %d bytes exceeds the maximum packet size %d",
			Type(first>>4), hdr+length, r.max)
	}
	t := Type(first >> 4)
	if r.version == 0 && t != CONNECT {
		return nil, Errorf(ProtocolError, "first packet is %s, not CONNECT", t)
	}
	if r.version != 0 && t == CONNECT {
		// MQTT-3.1.0-2: a second CONNECT is a Protocol Error; a client
		// never receives one.
		return nil, Errorf(ProtocolError, "CONNECT after the connection's version is known")
	}
	body, err := readBody(r.r, length)
	if err != nil {
		return nil, unexpected(err)
	}
	v := r.version
	if t == CONNECT {
		v = 0
	}
	p, derr := decode(first, body, v)
	if derr != nil {
		return nil, derr
	}
	if c, ok := p.(*Connect); ok {
		r.version = c.Version
	}
	return p, nil
}

// bodyChunk is the most readBody allocates ahead of the bytes that arrived.
const bodyChunk = 64 << 10

// readBody reads a packet body of n bytes. Up to bodyChunk it allocates the
// body at once; beyond, the buffer grows as the bytes arrive, so a peer that
// claims a large packet (within the limit) and sends less costs no more
// memory than it sent.
func readBody(r io.Reader, n int) ([]byte, error) {
	if n <= bodyChunk {
		body := make([]byte, n)
		_, err := io.ReadFull(r, body)
		return body, err
	}
	body := make([]byte, 0, bodyChunk)
	for len(body) < n {
		if len(body) == cap(body) {
			body = append(body, make([]byte, min(cap(body), n-len(body)))...)[:len(body)]
		}
		k, err := io.ReadFull(r, body[len(body):min(cap(body), n)])
		body = body[:len(body)+k]
		if err != nil {
			return nil, err
		}
	}
	return body, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Decode decodes one whole packet from b (fixed header included) with
// protocol version v; v is ignored for CONNECT, which carries its own. It is
// ReadPacket for a packet already in memory: the packet refers to b.
func Decode(b []byte, v Version) (Packet, error) {
	if len(b) < 2 {
		return nil, Errorf(MalformedPacket, "packet shorter than a fixed header")
	}
	length, n, err := parseVarint(b[1:])
	if err != nil {
		return nil, Errorf(MalformedPacket, "remaining length: %s", err.Msg)
	}
	if 1+n+length != len(b) {
		return nil, Errorf(MalformedPacket, "remaining length %d does not match the %d bytes given", length, len(b)-1-n)
	}
	if Type(b[0]>>4) == CONNECT {
		v = 0
	}
	p, derr := decode(b[0], b[1+n:], v)
	if derr != nil {
		return nil, derr
	}
	return p, nil
}

// decode decodes a packet body. v is 0 only for CONNECT.
func decode(first byte, body []byte, v Version) (Packet, *Error) {
	t := Type(first >> 4)
	flags := first & 0x0F
	want := byte(0)
	switch t {
	case PUBLISH:
		want = flags
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		want = 0x02
	}
	if flags != want {
		return nil, Errorf(MalformedPacket, "%s: reserved flags 0x%X in the fixed header", t, flags)
	}
	d := &decoder{b: body, pkt: t.String()}
	var p Packet
	switch t {
	case CONNECT:
		p = d.connect()
	case CONNACK:
		p = d.connack(v)
	case PUBLISH:
		p = d.publish(flags, v)
	case PUBACK:
		p = d.ack(PUBACK, v)
	case PUBREC:
		p = d.ack(PUBREC, v)
	case PUBREL:
		p = d.ack(PUBREL, v)
	case PUBCOMP:
		p = d.ack(PUBCOMP, v)
	case SUBSCRIBE:
		p = d.subscribe(v)
	case SUBACK:
		p = d.suback(v)
	case UNSUBSCRIBE:
		p = d.unsubscribe(v)
	case UNSUBACK:
		p = d.unsuback(v)
	case PINGREQ:
		d.end()
		p = &Pingreq{}
	case PINGRESP:
		d.end()
		p = &Pingresp{}
	case DISCONNECT:
		p = d.disconnect(v)
	case AUTH:
		if v != V5 {
			return nil, Errorf(MalformedPacket, "AUTH is not a %s packet", v)
		}
		p = d.auth()
	default:
		return nil, Errorf(MalformedPacket, "reserved packet type 0")
	}
	if d.err != nil {
		return nil, d.err
	}
	return p, nil
}

func (d *decoder) connect() *Connect {
	c := &Connect{}
	c.ProtocolName = d.string("protocol name")
	level := d.byte("protocol level")
	if d.err != nil {
		return nil
	}
	if d.check(checkProtocol(c.ProtocolName, level)) {
		return nil
	}
	c.Version = Version(level)
	flags := d.byte("flags")
	c.KeepAlive = d.uint16("keep alive")
	if d.err != nil {
		return nil
	}
	if flags&0x01 != 0 {
		d.fail(MalformedPacket, "reserved flag set")
		return nil
	}
	c.CleanStart = flags&0x02 != 0
	c.WillFlag = flags&0x04 != 0
	c.WillQoS = flags >> 3 & 0x03
	c.WillRetain = flags&0x20 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.UsernameFlag = flags&0x80 != 0
	d.check(checkConnectFlags(c, c.Version))
	if c.Version == V5 {
		d.properties(&c.Properties, connectProps, "")
		if d.err == nil {
			d.check(checkConnectAuth(&c.Properties))
		}
	}
	c.ClientID = d.string("client identifier")
	if c.WillFlag {
		if c.Version == V5 {
			d.properties(&c.WillProperties, willProps, "will")
		}
		c.WillTopic = d.string("will topic")
		if d.err == nil {
			d.check(checkWillTopic(c.WillTopic))
		}
		c.WillPayload = d.binary("will payload")
	}
	if c.UsernameFlag {
		c.Username = d.string("user name")
	}
	if c.PasswordFlag {
		c.Password = d.binary("password")
	}
	d.end()
	return c
}

func (d *decoder) connack(v Version) *Connack {
	c := &Connack{}
	flags := d.byte("flags")
	c.ReasonCode = ReasonCode(d.byte("reason code"))
	if d.err != nil {
		return nil
	}
	switch {
	case v == V31:
		// 3.1: the byte is reserved and not used; it carries no Session
		// Present and 3.1 asks nothing of its value.
	case flags&^0x01 != 0:
		d.fail(MalformedPacket, "reserved flags 0x%02X", flags)
		return nil
	default:
		c.SessionPresent = flags&0x01 != 0
	}
	if v == V5 {
		if d.check(checkReason(CONNACK, c.ReasonCode)) {
			return nil
		}
		d.properties(&c.Properties, connackProps, "")
	} else if c.ReasonCode > ConnRefusedNotAuthorized {
		// 3.1.1 section 3.2.2.3: return codes 6-255 are reserved.
		d.fail(MalformedPacket, "connect return code %d is reserved", byte(c.ReasonCode))
		return nil
	}
	if d.err == nil && c.SessionPresent && c.ReasonCode != Success {
		d.fail(MalformedPacket, "session present with a refusal")
	}
	d.end()
	return c
}

func (d *decoder) publish(flags byte, v Version) *Publish {
	p := &Publish{Dup: flags&0x08 != 0, QoS: flags >> 1 & 0x03, Retain: flags&0x01 != 0}
	if d.check(checkPublishFlags(p.QoS, p.Dup)) {
		return nil
	}
	p.Topic = d.string("topic name")
	if p.QoS > 0 {
		p.PacketID = d.uint16("packet identifier")
		if d.err == nil {
			d.check(checkPacketID(p.PacketID))
		}
	}
	if v == V5 {
		d.properties(&p.Properties, publishProps, "")
	}
	if d.err != nil || d.check(checkPublishTopic(p.Topic, v == V5, p.Properties.HasTopicAlias)) {
		return nil
	}
	p.Payload = d.rest()
	return p
}

// ack decodes PUBACK, PUBREC, PUBREL and PUBCOMP, which share one layout.
func (d *decoder) ack(t Type, v Version) Packet {
	id := d.packetID()
	var rc ReasonCode
	var props Properties
	if v == V5 && d.err == nil && d.remaining() > 0 {
		rc = ReasonCode(d.byte("reason code"))
		d.check(checkReason(t, rc))
		if d.remaining() > 0 {
			d.properties(&props, ackProps, "")
		}
	}
	d.end()
	if d.err != nil {
		return nil
	}
	switch t {
	case PUBACK:
		return &Puback{PacketID: id, ReasonCode: rc, Properties: props}
	case PUBREC:
		return &Pubrec{PacketID: id, ReasonCode: rc, Properties: props}
	case PUBREL:
		return &Pubrel{PacketID: id, ReasonCode: rc, Properties: props}
	}
	return &Pubcomp{PacketID: id, ReasonCode: rc, Properties: props}
}

func (d *decoder) subscribe(v Version) *Subscribe {
	s := &Subscribe{PacketID: d.packetID()}
	if v == V5 {
		d.properties(&s.Properties, subscribeProps, "")
		if d.err == nil && len(s.Properties.SubscriptionIdentifiers) > 1 {
			d.fail(ProtocolError, "more than one subscription identifier")
		}
	}
	for d.err == nil && d.remaining() > 0 {
		sub := Subscription{Filter: d.string("topic filter")}
		opts := d.byte("options")
		if d.err != nil {
			break
		}
		reserved := byte(0xFC)
		if v == V5 {
			reserved = 0xC0
		}
		if opts&reserved != 0 {
			d.fail(MalformedPacket, "reserved option bits set for %q", sub.Filter)
			break
		}
		sub.QoS = opts & 0x03
		sub.NoLocal = opts&0x04 != 0
		sub.RetainAsPublished = opts&0x08 != 0
		sub.RetainHandling = opts >> 4 & 0x03
		d.check(checkSubscription(&sub, v == V5))
		s.Subscriptions = append(s.Subscriptions, sub)
	}
	if d.err == nil && len(s.Subscriptions) == 0 {
		d.fail(ProtocolError, "no topic filter")
	}
	if d.err != nil {
		return nil
	}
	return s
}

func (d *decoder) suback(v Version) *Suback {
	s := &Suback{PacketID: d.packetID()}
	if v == V5 {
		d.properties(&s.Properties, ackProps, "")
	}
	for d.err == nil && d.remaining() > 0 {
		rc := ReasonCode(d.byte("reason code"))
		if v == V5 {
			d.check(checkReason(SUBACK, rc))
		} else if rc > 2 && rc != SubackFailure {
			d.fail(MalformedPacket, "return code 0x%02X is not valid here", byte(rc))
		}
		s.ReasonCodes = append(s.ReasonCodes, rc)
	}
	if d.err == nil && len(s.ReasonCodes) == 0 {
		d.fail(ProtocolError, "no reason code")
	}
	if d.err != nil {
		return nil
	}
	return s
}

func (d *decoder) unsubscribe(v Version) *Unsubscribe {
	u := &Unsubscribe{PacketID: d.packetID()}
	if v == V5 {
		d.properties(&u.Properties, unsubscribeProps, "")
	}
	for d.err == nil && d.remaining() > 0 {
		f := d.string("topic filter")
		if d.err == nil && f == "" {
			d.fail(ProtocolError, "empty topic filter")
		}
		u.Filters = append(u.Filters, f)
	}
	if d.err == nil && len(u.Filters) == 0 {
		d.fail(ProtocolError, "no topic filter")
	}
	if d.err != nil {
		return nil
	}
	return u
}

func (d *decoder) unsuback(v Version) *Unsuback {
	u := &Unsuback{PacketID: d.packetID()}
	if v != V5 {
		d.end()
	} else {
		d.properties(&u.Properties, ackProps, "")
		for d.err == nil && d.remaining() > 0 {
			rc := ReasonCode(d.byte("reason code"))
			d.check(checkReason(UNSUBACK, rc))
			u.ReasonCodes = append(u.ReasonCodes, rc)
		}
		if d.err == nil && len(u.ReasonCodes) == 0 {
			d.fail(ProtocolError, "no reason code")
		}
	}
	if d.err != nil {
		return nil
	}
	return u
}

func (d *decoder) disconnect(v Version) *Disconnect {
	p := &Disconnect{}
	if v == V5 && d.remaining() > 0 {
		p.ReasonCode = ReasonCode(d.byte("reason code"))
		d.check(checkReason(DISCONNECT, p.ReasonCode))
		if d.remaining() > 0 {
			d.properties(&p.Properties, disconnectProps, "")
		}
	}
	d.end()
	if d.err != nil {
		return nil
	}
	return p
}

// auth decodes a 5.0 AUTH. Remaining length 0 is Success without
// properties; any other AUTH must carry an Authentication Method.
func (d *decoder) auth() *Auth {
	a := &Auth{}
	short := d.remaining() == 0
	if !short {
		a.ReasonCode = ReasonCode(d.byte("reason code"))
		d.check(checkReason(AUTH, a.ReasonCode))
		if d.remaining() > 0 {
			d.properties(&a.Properties, authProps, "")
		}
	}
	d.end()
	if d.err == nil {
		d.check(checkAuth(a, short))
	}
	if d.err != nil {
		return nil
	}
	return a
}

// validName returns "" when name is a valid topic name, else what is wrong.
func validName(name string) string {
	if err := topic.ValidName(name); err != nil {
		return err.Error()
	}
	return ""
}
