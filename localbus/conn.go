package localbus

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/topic"
	"holdfast/internal/transport"
)

// writeTimeout bounds one write to a client; a client that does not read for
// that long is disconnected.
const writeTimeout = 30 * time.Second

// Kinds of entries in a connection's acknowledgement pipeline.
const (
	ackNone    = iota // QoS 0 publish: nothing to send
	ackPuback         // QoS 1
	ackPubrec         // QoS 2
	ackPubcomp        // answer to PUBREL
	ackPacket         // SUBACK / UNSUBACK prepared in pkt
)

// ackEntry is one packet from the client waiting for its answer. Answers go
// out in the order the packets came, each once its store write is done.
type ackEntry struct {
	kind int
	pid  uint16
	done bool
	err  error             // store error
	rc   packet.ReasonCode // reason code when err is nil
	pkt  packet.Packet
	then func()
}

// conn is one client connection.
type conn struct {
	b  *Broker
	nc net.Conn
	lo *ListenerOptions
	r  *packet.Reader

	version  packet.Version // the client's, V31, V311 or V5: what is sent is encoded for it
	cid      string
	username string
	s        *session
	ka       time.Duration
	sendMax  int               // client's Receive Maximum
	maxOut   uint32            // client's Maximum Packet Size, 0: none
	aliases  map[uint16]string // inbound topic aliases

	// Outbound topic aliases (5.0), guarded by b.mu.
	aliasOutMax uint16
	outAliases  map[string]uint16
	will        *will

	// Guarded by b.mu.
	closed     bool
	acks       []*ackEntry
	inflightIn int // QoS 1/2 publishes not fully acknowledged
	// inQoS2 holds the QoS 2 packet ids counted in inflightIn, so that a
	// resend on this connection is counted once and released once.
	inQoS2   map[uint16]bool
	slotHeld bool

	slots chan struct{} // bounds entries in acks

	unwritten  atomic.Int64 // packets handed to send and not yet flushed
	outMu      sync.Mutex
	out        []outPacket
	outClose   bool
	outDead    bool
	writerOn   bool
	outSig     chan struct{}
	writerDone chan struct{}
}

func newConn(b *Broker, nc net.Conn, lo *ListenerOptions) *conn {
	return &conn{
		b: b, nc: nc, lo: lo,
		slots:      make(chan struct{}, int(b.opts.ReceiveMaximum)),
		aliases:    make(map[uint16]string),
		outSig:     make(chan struct{}, 1),
		writerDone: make(chan struct{}),
	}
}

// outPacket is a packet waiting for the writer; o is the message a PUBLISH
// delivers (nil for other packets).
type outPacket struct {
	p packet.Packet
	o *outMsg
}

// send queues p for the writer. It never blocks.
func (c *conn) send(p packet.Packet) { c.sendFor(p, nil) }

// sendFor is send for a PUBLISH delivering o (o nil for other packets), so
// that a delivery the codec refuses can be dropped and its packet id freed.
func (c *conn) sendFor(p packet.Packet, o *outMsg) {
	c.outMu.Lock()
	if c.outClose || c.outDead {
		c.outMu.Unlock()
		return
	}
	c.out = append(c.out, outPacket{p: p, o: o})
	c.unwritten.Add(1)
	c.outMu.Unlock()
	select {
	case c.outSig <- struct{}{}:
	default:
	}
}

// closeOut makes the writer close the connection after what is queued.
func (c *conn) closeOut() {
	c.outMu.Lock()
	c.outClose = true
	c.outMu.Unlock()
	select {
	case c.outSig <- struct{}{}:
	default:
	}
}

// closeWith ends the connection, with DISCONNECT rc first for a 5.0 client
// (rc 0: none). Called with b.mu held.
func (c *conn) closeWith(rc packet.ReasonCode) {
	if c.closed {
		return
	}
	c.closed = true
	if rc != 0 && c.version == packet.V5 {
		c.send(&packet.Disconnect{ReasonCode: rc})
	}
	c.closeOut()
}

// writer encodes and writes queued packets until closeOut or a write error.
// A PUBLISH the codec refuses to encode (a stored message with fields MQTT
// does not allow, which Broker.Publish and Ingest refuse to take) is not
// written: it is dropped, counted (DroppedInvalid) and its packet id and
// window slot are freed, as if the client had acknowledged it.
func (c *conn) writer() {
	defer close(c.writerDone)
	bw := bufio.NewWriterSize(c.nc, 16<<10)
	var buf []byte
	fail := func() {
		c.outMu.Lock()
		c.outDead = true
		c.out = nil
		c.outMu.Unlock()
		c.nc.Close()
	}
	for {
		c.outMu.Lock()
		for len(c.out) == 0 && !c.outClose {
			c.outMu.Unlock()
			<-c.outSig
			c.outMu.Lock()
		}
		batch := c.out
		c.out = nil
		closing := c.outClose
		c.outMu.Unlock()
		c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		for _, op := range batch {
			var err error
			buf, err = packet.Append(buf[:0], op.p, c.version)
			if err != nil {
				c.unencodable(op, err)
				continue
			}
			if _, err := bw.Write(buf); err != nil {
				fail()
				return
			}
		}
		if err := bw.Flush(); err != nil {
			fail()
			return
		}
		c.unwritten.Add(-int64(len(batch)))
		if closing {
			c.outMu.Lock()
			c.outDead = true
			c.outMu.Unlock()
			c.nc.Close()
			return
		}
	}
}

// unencodable handles a packet the codec refused to encode, on the writer's
// goroutine. A PUBLISH is dropped and counted; for QoS 1 and 2 the
// in-flight message is ended under b.mu, freeing its packet id and its
// place in the client's window (its stored copy is deleted), unless it was
// ended or acknowledged meanwhile. Any other packet is the broker's own
// and is only logged.
func (c *conn) unencodable(op outPacket, err error) {
	b := c.b
	pub, ok := op.p.(*packet.Publish)
	if !ok {
		b.log.Error("encoding packet failed", "client_id", c.cid, "type", op.p.Type().String(), "err", err)
		return
	}
	b.stats.dropInvalid.Add(1)
	b.log.Warn("delivery dropped: the message cannot be encoded", "client_id", c.cid, "topic", pub.Topic, "err", err)
	if o := op.o; o != nil && pub.QoS > 0 {
		b.post(func() {
			if s := o.s; s != nil && o.pid != 0 && s.pids[o.pid] == o {
				b.acked(s, o)
			}
		})
	}
}

// serve runs the connection until it ends.
func (c *conn) serve() {
	b := c.b
	defer c.nc.Close()
	log := b.log.With("remote", c.nc.RemoteAddr().String())
	deadline := time.Now().Add(b.opts.ConnectTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	err := transport.Handshake(ctx, c.nc)
	cancel()
	if err != nil {
		log.Debug("tls handshake failed", "err", err)
		return
	}
	c.nc.SetReadDeadline(deadline)
	head := &headRecorder{r: c.nc}
	c.r = packet.NewReader(head, b.opts.MaxPacketSize)
	p, err := c.r.ReadPacket()
	head.stop()
	if err != nil {
		var pe *packet.Error
		if errors.As(err, &pe) {
			b.stats.malformed.Add(1)
			log.Debug("bad CONNECT", "err", err)
			c.version = packet.V311
			switch {
			case pe.Code == packet.UnsupportedProtocolVersion && head.connectLevel() == packet.V5:
				// Level 5 with another protocol name: 5.0 MQTT-3.1.2-1
				// allows CONNACK 0x84, then the close.
				c.version = packet.V5
				c.startWriter()
				c.send(&packet.Connack{ReasonCode: packet.UnsupportedProtocolVersion})
			case pe.Code == packet.UnsupportedProtocolVersion:
				// 3.1.1 MQTT-3.1.2-2: CONNACK return code 0x01.
				c.startWriter()
				c.send(&packet.Connack{ReasonCode: packet.ConnRefusedProtocolVersion})
			case head.connectLevel() == packet.V5:
				// 5.0 MQTT-3.1.4-1, section 4.13: a CONNACK with the
				// reason code before closing.
				c.version = packet.V5
				c.startWriter()
				c.send(&packet.Connack{ReasonCode: connackCode(pe.Code)})
			}
			if c.writerStarted() {
				c.closeOut()
				<-c.writerDone
			}
		}
		return
	}
	cp, ok := p.(*packet.Connect)
	if !ok {
		b.stats.malformed.Add(1)
		log.Debug("first packet is not CONNECT", "type", p.Type().String())
		return
	}
	// 3.1 is kept, not treated as 3.1.1: its CONNACK has no Session
	// Present and its SUBACK no failure code.
	c.version = cp.Version
	c.startWriter()
	defer func() { <-c.writerDone }()
	if !c.connect(cp) {
		c.closeOut()
		return
	}
	c.readLoop()
	b.mu.Lock()
	c.cleanup()
	b.mu.Unlock()
}

func (c *conn) startWriter() {
	c.outMu.Lock()
	started := c.writerOn
	c.writerOn = true
	c.outMu.Unlock()
	if !started {
		go c.writer()
	}
}

func (c *conn) writerStarted() bool {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.writerOn
}

// readLoop reads and handles packets until the connection ends.
func (c *conn) readLoop() {
	b := c.b
	for {
		if c.ka > 0 {
			c.nc.SetReadDeadline(time.Now().Add(c.ka * 3 / 2))
		} else {
			c.nc.SetReadDeadline(time.Time{})
		}
		p, err := c.r.ReadPacket()
		if err != nil {
			var pe *packet.Error
			var ne net.Error
			b.mu.Lock()
			switch {
			case errors.As(err, &pe):
				b.stats.malformed.Add(1)
				b.log.Debug("protocol violation", "client_id", c.cid, "err", err)
				c.closeWith(pe.Code)
			case errors.As(err, &ne) && ne.Timeout() && c.ka > 0 && !c.closed:
				b.log.Debug("keep alive timeout", "client_id", c.cid)
				c.closeWith(packet.KeepAliveTimeout)
			default:
				c.closeWith(0)
			}
			b.mu.Unlock()
			return
		}
		if needsSlot(p) {
			if pub, ok := p.(*packet.Publish); ok && pub.QoS > 0 && c.version == packet.V5 {
				b.mu.Lock()
				over := c.inflightIn >= int(b.opts.ReceiveMaximum)
				if over {
					b.stats.malformed.Add(1)
					c.closeWith(packet.ReceiveMaximumExceeded)
				}
				b.mu.Unlock()
				if over {
					return
				}
			}
			c.slots <- struct{}{}
			c.slotHeld = true
		}
		b.mu.Lock()
		cont := !c.closed && c.handle(p)
		if c.slotHeld {
			c.slotHeld = false
			<-c.slots
		}
		b.mu.Unlock()
		if !cont {
			return
		}
	}
}

func needsSlot(p packet.Packet) bool {
	switch p.Type() {
	case packet.PUBLISH, packet.PUBREL, packet.SUBSCRIBE, packet.UNSUBSCRIBE:
		return true
	}
	return false
}

// newEntry appends an entry to the acknowledgement pipeline; it takes over
// the slot the reader acquired.
func (c *conn) newEntry(kind int, pid uint16) *ackEntry {
	e := &ackEntry{kind: kind, pid: pid}
	c.acks = append(c.acks, e)
	if c.slotHeld {
		c.slotHeld = false
	} else {
		select { // entries are made only for packets that took a slot
		case c.slots <- struct{}{}:
		default:
		}
	}
	switch kind {
	case ackPuback:
		c.inflightIn++
	case ackPubrec:
		if !c.inQoS2[pid] {
			if c.inQoS2 == nil {
				c.inQoS2 = make(map[uint16]bool)
			}
			c.inQoS2[pid] = true
			c.inflightIn++
		}
	}
	return e
}

func (c *conn) inflightDone() {
	if c.inflightIn > 0 {
		c.inflightIn--
	}
}

// qos2Done ends the count of QoS 2 packet id pid on this connection.
func (c *conn) qos2Done(pid uint16) {
	if c.inQoS2[pid] {
		delete(c.inQoS2, pid)
		c.inflightDone()
	}
}

// flushAcks sends the answers at the head of the pipeline that are done.
// Called with b.mu held.
func (c *conn) flushAcks() {
	for len(c.acks) > 0 && c.acks[0].done {
		e := c.acks[0]
		c.acks[0] = nil
		c.acks = c.acks[1:]
		select {
		case <-c.slots:
		default:
		}
		if !c.closed {
			c.answer(e, e.err)
		}
		if e.then != nil {
			// Even on a closed connection: it makes the retained messages
			// of a SUBSCRIBE deliverable, which the session's queue waits for.
			e.then()
		}
	}
}

// answer sends the response for a completed entry; err is the store's.
func (c *conn) answer(e *ackEntry, err error) {
	v5 := c.version == packet.V5
	switch e.kind {
	case ackPuback:
		c.inflightDone()
		switch {
		case err == nil:
			c.send(&packet.Puback{PacketID: e.pid, ReasonCode: e.rc})
		case v5:
			c.send(&packet.Puback{PacketID: e.pid, ReasonCode: storeCode(err)})
		default:
			c.closeWith(0) // 3.1.1: no way to refuse; unacknowledged, it is sent again
		}
	case ackPubrec:
		switch {
		case err == nil:
			if e.rc.IsError() {
				c.qos2Done(e.pid)
			}
			c.send(&packet.Pubrec{PacketID: e.pid, ReasonCode: e.rc})
		case v5:
			c.qos2Done(e.pid)
			c.send(&packet.Pubrec{PacketID: e.pid, ReasonCode: storeCode(err)})
		default:
			c.qos2Done(e.pid)
			c.closeWith(0)
		}
	case ackPubcomp:
		c.qos2Done(e.pid)
		c.send(&packet.Pubcomp{PacketID: e.pid, ReasonCode: e.rc})
	case ackPacket:
		c.send(e.pkt)
	}
}

func storeCode(err error) packet.ReasonCode {
	if errors.Is(err, ErrRefused) {
		return packet.QuotaExceeded
	}
	return packet.UnspecifiedError
}

// connect answers CONNECT; it reports whether the client is connected.
func (c *conn) connect(cp *packet.Connect) bool {
	b := c.b
	v5 := cp.Version == packet.V5
	refuse := func(rc5, rc3 packet.ReasonCode, why string) bool {
		b.stats.connRefused.Add(1)
		b.log.Info("connection refused", "client_id", cp.ClientID, "remote", c.nc.RemoteAddr().String(), "reason", why)
		rc := rc3
		if v5 {
			rc = rc5
		}
		c.send(&packet.Connack{ReasonCode: rc})
		return false
	}
	if v5 && cp.Properties.HasAuthMethod {
		return refuse(packet.BadAuthenticationMethod, packet.ConnRefusedNotAuthorized, "enhanced authentication is not supported")
	}
	cid, assigned := cp.ClientID, false
	if cid == "" {
		if cp.Version == packet.V31 {
			// MQTT 3.1 has no empty client id: 1 to 23 characters.
			return refuse(packet.ClientIdentifierNotValid, packet.ConnRefusedIdentifierRejected, "empty client id (MQTT 3.1)")
		}
		if !v5 && !cp.CleanStart {
			return refuse(packet.ClientIdentifierNotValid, packet.ConnRefusedIdentifierRejected, "empty client id without clean session")
		}
		var rnd [12]byte
		rand.Read(rnd[:])
		cid, assigned = "auto-"+hex.EncodeToString(rnd[:]), true
	}
	// Authentication (bcrypt is slow: outside b.mu).
	username, authed := cp.Username, false
	if cp.UsernameFlag && c.lo.Auth != nil {
		if !c.lo.Auth.Check(cp.Username, string(cp.Password)) {
			return refuse(packet.BadUserNameOrPassword, packet.ConnRefusedBadUsernameOrPass, "bad username or password")
		}
		authed = true
	}
	if !cp.UsernameFlag {
		if st, ok := transport.TLSState(c.nc); ok && len(st.VerifiedChains) > 0 && len(st.PeerCertificates) > 0 {
			username, authed = st.PeerCertificates[0].Subject.CommonName, true
		}
	}
	if !authed && !c.lo.AllowAnonymous {
		return refuse(packet.NotAuthorized, packet.ConnRefusedNotAuthorized, "not authorized")
	}
	var w *will
	if cp.WillFlag {
		if cp.WillRetain && !b.opts.RetainAvailable {
			return refuse(packet.RetainNotSupported, packet.ConnRefusedNotAuthorized, "retained will but retain is not available")
		}
		if err := topic.ValidName(cp.WillTopic); err != nil {
			return refuse(packet.TopicNameInvalid, packet.ConnRefusedNotAuthorized, "invalid will topic")
		}
		if !c.lo.ACL.CanPublish(username, cid, cp.WillTopic) {
			return refuse(packet.NotAuthorized, packet.ConnRefusedNotAuthorized, "will topic not authorized")
		}
		m := &Message{Topic: cp.WillTopic, Payload: cp.WillPayload, QoS: cp.WillQoS, Retain: cp.WillRetain, ClientID: cid}
		wp := &cp.WillProperties
		if v5 {
			setMessageProps(m, wp)
		}
		w = &will{m: m}
		if v5 && wp.HasWillDelay {
			w.delay = time.Duration(wp.WillDelay) * time.Second
		}
	}
	// Session expiry interval.
	var expiry uint32
	maxExp := uint32(0)
	if b.opts.MaxSessionExpiry > 0 {
		maxExp = uint32(min(b.opts.MaxSessionExpiry/time.Second, math.MaxUint32))
	}
	requested := uint32(0)
	if v5 {
		if cp.Properties.HasSessionExpiry {
			requested = cp.Properties.SessionExpiry
		}
		expiry = min(requested, maxExp)
	} else if !cp.CleanStart {
		expiry = maxExp
	}
	ka := time.Duration(cp.KeepAlive) * time.Second
	serverKA := false
	if v5 && b.opts.MaxKeepAlive > 0 {
		maxKA := min(b.opts.MaxKeepAlive.Truncate(time.Second), 65535*time.Second)
		if maxKA > 0 && (ka == 0 || ka > maxKA) {
			ka, serverKA = maxKA, true
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return refuse(packet.ServerUnavailable, packet.ConnRefusedServerUnavailable, "shutting down")
	}
	s := b.sessions[cid]
	// A takeover replaces a connection, so the limit does not apply: a
	// device reconnecting while its old socket is half dead must not wait
	// for that socket's keep alive to run out.
	if (s == nil || s.conn == nil) && len(b.conns) >= b.opts.MaxConnections {
		return refuse(packet.QuotaExceeded, packet.ConnRefusedServerUnavailable, "too many connections")
	}
	present := false
	if s != nil {
		if old := s.conn; old != nil {
			b.log.Info("session taken over", "client_id", cid)
			ow := old.will
			old.will = nil
			s.conn = nil
			old.closeWith(packet.SessionTakenOver)
			if ow != nil && (cp.CleanStart || ow.delay == 0) {
				b.publishWill(ow.m)
			}
		}
		if s.pendingWill != nil && !cp.CleanStart {
			s.pendingWill = nil // reconnected within the will delay
		}
		if cp.CleanStart {
			b.endSession(s)
			s = nil
		} else {
			present = true
			s.stopTimers()
		}
	}
	if s == nil {
		s = newSession(cid)
		b.sessions[cid] = s
	}
	s.version = c.version
	s.expiry = expiry
	wasPersistent := s.persistent
	s.persistent = expiry > 0
	var ops []StateOp
	switch {
	case s.persistent:
		ops = append(ops, StateOp{Key: sessionKey(cid), Value: encodeSession(s)})
		if !wasPersistent {
			for _, o := range append(append([]*outMsg(nil), s.inflight...), s.queue...) {
				if o.qos > 0 && !o.dead {
					o.persisted = true
					ops = append(ops, StateOp{Key: queuedKey(cid, o.seq), Value: encodeQueued(o)})
				}
			}
		}
	case wasPersistent:
		ops = append(ops, StateOp{Key: sessionKey(cid)})
		for _, o := range append(append([]*outMsg(nil), s.inflight...), s.queue...) {
			if o.persisted {
				o.persisted = false
				ops = append(ops, StateOp{Key: queuedKey(cid, o.seq)})
			}
		}
		for id, st := range s.inbound {
			if st {
				s.inbound[id] = false
				ops = append(ops, StateOp{Key: inboundKey(cid, id)})
			}
		}
	}
	b.save(ops, nil)

	c.s, c.cid, c.username, c.will, c.ka = s, cid, username, w, ka
	s.conn = c
	b.conns[c] = struct{}{}
	if v5 {
		c.sendMax = 65535
		if cp.Properties.HasReceiveMaximum {
			c.sendMax = int(cp.Properties.ReceiveMaximum)
		}
		if cp.Properties.HasMaximumPacketSize {
			c.maxOut = cp.Properties.MaximumPacketSize
		}
		if cp.Properties.HasTopicAliasMaximum && cp.Properties.TopicAliasMaximum > 0 {
			c.aliasOutMax = cp.Properties.TopicAliasMaximum
			c.outAliases = make(map[string]uint16)
		}
	} else {
		c.sendMax = int(b.opts.ReceiveMaximum)
	}
	ack := &packet.Connack{SessionPresent: present}
	if v5 {
		pr := &ack.Properties
		pr.ReceiveMaximum, pr.HasReceiveMaximum = b.opts.ReceiveMaximum, true
		pr.MaximumPacketSize, pr.HasMaximumPacketSize = b.opts.MaxPacketSize, true
		pr.TopicAliasMaximum, pr.HasTopicAliasMaximum = TopicAliasMaximum, true
		if !b.opts.RetainAvailable {
			pr.RetainAvailable, pr.HasRetainAvailable = 0, true
		}
		if assigned {
			pr.AssignedClientID, pr.HasAssignedClientID = cid, true
		}
		if expiry != requested {
			pr.SessionExpiry, pr.HasSessionExpiry = expiry, true
		}
		if serverKA {
			pr.ServerKeepAlive, pr.HasServerKeepAlive = uint16(ka/time.Second), true
		}
	}
	c.send(ack)
	b.log.Debug("client connected", "client_id", cid, "version", c.version.String(),
		"session_present", present, "listener", c.lo.Name)
	if present {
		b.resend(s)
	}
	b.pump(s)
	return true
}

// setMessageProps copies the MQTT 5 message properties of a PUBLISH or will.
func setMessageProps(m *Message, p *packet.Properties) {
	if p.HasPayloadFormat {
		m.PayloadFormat = p.PayloadFormat
	}
	if p.HasContentType {
		m.ContentType = p.ContentType
	}
	if p.HasResponseTopic {
		m.ResponseTopic = p.ResponseTopic
	}
	if p.HasCorrelationData {
		m.CorrelationData = p.CorrelationData
		if m.CorrelationData == nil {
			m.CorrelationData = []byte{}
		}
	}
	if p.HasMessageExpiry {
		m.Expiry = time.Duration(p.MessageExpiry) * time.Second
	}
	m.UserProperties = p.UserProperties
}

// publishPacket builds the PUBLISH for o.
func (c *conn) publishPacket(o *outMsg, dup bool, now time.Time) *packet.Publish {
	m := o.m
	p := &packet.Publish{Dup: dup && o.qos > 0, QoS: o.qos, Retain: o.retain, Topic: m.Topic, PacketID: o.pid, Payload: m.Payload}
	if c.version == packet.V5 {
		pr := &p.Properties
		messageProps(pr, &m.Message)
		if secs, ok := m.remaining(now); ok {
			pr.MessageExpiry, pr.HasMessageExpiry = secs, true
		}
		pr.SubscriptionIdentifiers = o.subIDs
	}
	return p
}

// messageProps sets the MQTT 5 properties that m carries to every
// subscriber: Payload Format Indicator, Content Type, Response Topic,
// Correlation Data and User Properties (the expiry depends on the time of
// each delivery, the Subscription Identifiers on the subscriber).
func messageProps(pr *packet.Properties, m *Message) {
	if m.PayloadFormat != 0 {
		pr.PayloadFormat, pr.HasPayloadFormat = m.PayloadFormat, true
	}
	if m.ContentType != "" {
		pr.ContentType, pr.HasContentType = m.ContentType, true
	}
	if m.ResponseTopic != "" {
		pr.ResponseTopic, pr.HasResponseTopic = m.ResponseTopic, true
	}
	if m.CorrelationData != nil {
		pr.CorrelationData, pr.HasCorrelationData = m.CorrelationData, true
	}
	pr.UserProperties = m.UserProperties
}

// minAliasTopic is the shortest topic worth an alias: below it the alias
// property costs more than the topic it replaces.
const minAliasTopic = 4

// applyAlias puts a topic alias into p when the client accepts them (its
// Topic Alias Maximum): an alias already sent replaces the topic, a new one
// is set up while aliases are left. The returned func records a new alias;
// call it only if p is sent (a dropped packet must not set one up).
func (c *conn) applyAlias(p *packet.Publish) func() {
	if c.aliasOutMax == 0 || len(p.Topic) < minAliasTopic {
		return func() {}
	}
	if a, ok := c.outAliases[p.Topic]; ok {
		p.Properties.TopicAlias, p.Properties.HasTopicAlias = a, true
		p.Topic = ""
		return func() {}
	}
	if len(c.outAliases) >= int(c.aliasOutMax) {
		return func() {}
	}
	a := uint16(len(c.outAliases) + 1)
	p.Properties.TopicAlias, p.Properties.HasTopicAlias = a, true
	topic := p.Topic
	return func() { c.outAliases[topic] = a }
}

// handle handles one packet after CONNECT, with b.mu held; it reports whether
// to keep reading.
func (c *conn) handle(p packet.Packet) bool {
	b, s := c.b, c.s
	v5 := c.version == packet.V5
	switch p := p.(type) {
	case *packet.Publish:
		return c.handlePublish(p)
	case *packet.Puback:
		if o := s.pids[p.PacketID]; o != nil && o.qos == 1 && s.conn == c {
			b.acked(s, o)
		}
	case *packet.Pubrec:
		o := s.pids[p.PacketID]
		switch {
		case o == nil || o.qos != 2 || s.conn != c:
			if v5 {
				c.send(&packet.Pubrel{PacketID: p.PacketID, ReasonCode: packet.PacketIdentifierNotFound})
			} else {
				c.send(&packet.Pubrel{PacketID: p.PacketID})
			}
		case p.ReasonCode.IsError():
			b.acked(s, o)
		default:
			// PUBREL only once PUBREC is on disk: after a crash the
			// message must be released, never sent again as new.
			var after uint64
			if !o.pubrec {
				o.pubrec = true
				if o.persisted {
					after = s.saveDelivery(b, []StateOp{{Key: queuedKey(s.cid, o.seq), Value: encodeQueued(o)}})
				}
			}
			s.deliver(c, &packet.Pubrel{PacketID: p.PacketID}, nil, after)
		}
	case *packet.Pubcomp:
		if o := s.pids[p.PacketID]; o != nil && o.qos == 2 && s.conn == c {
			b.acked(s, o)
		}
	case *packet.Pubrel:
		c.handlePubrel(p)
	case *packet.Subscribe:
		return c.handleSubscribe(p)
	case *packet.Unsubscribe:
		return c.handleUnsubscribe(p)
	case *packet.Pingreq:
		c.send(&packet.Pingresp{})
	case *packet.Disconnect:
		if v5 && p.Properties.HasSessionExpiry && s.conn == c {
			if s.expiry == 0 && p.Properties.SessionExpiry != 0 {
				b.stats.malformed.Add(1)
				// 5.0 section 3.14.2.2.2 (a rule without a statement number).
				c.closeWith(packet.ProtocolError)
				return false
			}
			maxExp := uint32(0)
			if b.opts.MaxSessionExpiry > 0 {
				maxExp = uint32(min(b.opts.MaxSessionExpiry/time.Second, math.MaxUint32))
			}
			s.expiry = min(p.Properties.SessionExpiry, maxExp)
		}
		if !v5 || p.ReasonCode != packet.DisconnectWithWill {
			c.will = nil
		}
		c.closeWith(0)
		return false
	default:
		// A second CONNECT, an AUTH we never asked for, or a packet only a
		// server sends.
		b.stats.malformed.Add(1)
		c.closeWith(packet.ProtocolError)
		return false
	}
	return true
}

func (c *conn) handlePublish(p *packet.Publish) bool {
	b, s := c.b, c.s
	v5 := c.version == packet.V5
	if v5 && p.Properties.HasTopicAlias {
		a := p.Properties.TopicAlias
		if a == 0 || a > TopicAliasMaximum {
			b.stats.malformed.Add(1)
			c.closeWith(packet.TopicAliasInvalid)
			return false
		}
		if p.Topic != "" {
			c.aliases[a] = p.Topic
		} else if t, ok := c.aliases[a]; ok {
			p.Topic = t
		} else {
			b.stats.malformed.Add(1)
			c.closeWith(packet.ProtocolError)
			return false
		}
	}
	if err := topic.ValidName(p.Topic); err != nil {
		b.stats.malformed.Add(1)
		if p.Topic == "" {
			c.closeWith(packet.ProtocolError)
		} else {
			c.closeWith(packet.TopicNameInvalid)
		}
		return false
	}
	if p.Retain && !b.opts.RetainAvailable {
		b.stats.malformed.Add(1)
		c.closeWith(packet.RetainNotSupported)
		return false
	}
	if b.closing {
		return true // not stored, not acknowledged: the client sends it again
	}
	if p.QoS == 2 {
		if _, dup := s.inbound[p.PacketID]; dup {
			// Received before (perhaps before a restart): answer, do not
			// store it twice (section 4.3.3, Method B). While the original
			// is still being written, the answer waits for its outcome: a
			// PUBREC before then could acknowledge what a crash loses or
			// what the store refuses.
			e := c.newEntry(ackPubrec, p.PacketID) // counted once per connection
			if pend := s.inPending[p.PacketID]; pend != nil {
				pend.waiters = append(pend.waiters, inWaiter{c: c, e: e})
				return true
			}
			e.done = true
			c.flushAcks()
			return true
		}
	}
	if !c.lo.ACL.CanPublish(c.username, c.cid, p.Topic) {
		b.stats.dropDenied.Add(1)
		switch p.QoS {
		case 1:
			e := c.newEntry(ackPuback, p.PacketID)
			e.done = true
			if v5 {
				e.rc = packet.NotAuthorized
			}
		case 2:
			e := c.newEntry(ackPubrec, p.PacketID)
			e.done = true
			if v5 {
				e.rc = packet.NotAuthorized
			} else {
				s.inbound[p.PacketID] = false // MQTT-3.3.5-2: acknowledge as usual
			}
		}
		c.flushAcks()
		return true
	}
	m := &Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, ClientID: c.cid}
	if v5 {
		setMessageProps(m, &p.Properties)
	}
	now := b.now()
	sm := newStored(m, now)
	var ops []StateOp
	kind := []int{ackNone, ackPuback, ackPubrec}[p.QoS]
	e := c.newEntry(kind, p.PacketID)
	pid := p.PacketID
	var pend *inPending
	if p.QoS == 2 {
		s.inbound[pid] = s.persistent
		if s.persistent {
			ops = append(ops, StateOp{Key: inboundKey(s.cid, pid), Value: []byte{1}})
		}
		pend = &inPending{c: c}
		s.inPending[pid] = pend
	}
	b.ingest(sm, ops, now, func(err error) {
		e.done, e.err = true, err
		if pend != nil {
			if s.inPending[pid] == pend {
				delete(s.inPending, pid)
			}
			if err != nil {
				if st, ok := s.inbound[pid]; ok {
					delete(s.inbound, pid)
					if st {
						b.save([]StateOp{{Key: inboundKey(s.cid, pid)}}, nil)
					}
				}
			}
			for _, w := range pend.waiters {
				w.e.done, w.e.err = true, err
				if w.c != c {
					w.c.flushAcks()
				}
			}
		}
		c.flushAcks()
	})
	return true
}

func (c *conn) handlePubrel(p *packet.Pubrel) {
	b, s := c.b, c.s
	st, ok := s.inbound[p.PacketID]
	if ok && st && b.closing {
		return // the deletion cannot be stored: the client sends PUBREL again
	}
	e := c.newEntry(ackPubcomp, p.PacketID)
	if !ok {
		if c.version == packet.V5 {
			e.rc = packet.PacketIdentifierNotFound
		}
		e.done = true
		c.flushAcks()
		return
	}
	delete(s.inbound, p.PacketID)
	if !st {
		e.done = true
		c.flushAcks()
		return
	}
	b.save([]StateOp{{Key: inboundKey(s.cid, p.PacketID)}}, func(err error) {
		e.done = true
		c.flushAcks()
	})
}

func (c *conn) handleSubscribe(p *packet.Subscribe) bool {
	b, s := c.b, c.s
	v5 := c.version == packet.V5
	var subID uint32
	if len(p.Properties.SubscriptionIdentifiers) > 0 {
		subID = p.Properties.SubscriptionIdentifiers[0]
	}
	if c.version == packet.V31 {
		// MQTT 3.1's SUBACK carries granted QoS only, no failure code:
		// a filter that is not one is a protocol violation, which closes
		// the connection (as mosquitto does), before anything of the
		// packet is applied.
		for _, sb := range p.Subscriptions {
			if validFilter(sb.Filter) != nil {
				b.stats.malformed.Add(1)
				c.closeWith(0)
				return false
			}
		}
	}
	rcs := make([]packet.ReasonCode, len(p.Subscriptions))
	var ops []StateOp
	var retained []*outMsg
	now := b.now()
	for i, sb := range p.Subscriptions {
		fail := func(rc5 packet.ReasonCode) {
			switch c.version {
			case packet.V5:
				rcs[i] = rc5
			case packet.V311:
				rcs[i] = packet.SubackFailure
			default:
				// 3.1: only a denied filter gets here. It is answered
				// with the QoS asked for and not subscribed, as
				// mosquitto answers 3.1 clients.
				rcs[i] = packet.ReasonCode(sb.QoS)
			}
		}
		if validFilter(sb.Filter) != nil {
			fail(packet.TopicFilterInvalid)
			continue
		}
		_, _, shared, _ := topic.ParseShared(sb.Filter)
		if shared && sb.NoLocal && v5 {
			b.stats.malformed.Add(1)
			c.closeWith(packet.ProtocolError) // MQTT-3.8.3-4
			return false
		}
		if !c.lo.ACL.CanSubscribe(c.username, c.cid, sb.Filter) {
			fail(packet.NotAuthorized)
			continue
		}
		sub := &subscription{Subscription: sb, id: subID}
		_, existed := s.subs[sb.Filter]
		s.subs[sb.Filter] = sub
		b.subs.Add(sb.Filter, s.cid, sub)
		rcs[i] = packet.ReasonCode(sb.QoS)
		if shared || sb.RetainHandling == 2 || sb.RetainHandling == 1 && existed {
			continue
		}
		for name, m := range b.retained {
			if !topic.Match(sb.Filter, name) || m.expired(now) {
				continue
			}
			o := &outMsg{s: s, m: m, qos: min(m.QoS, sb.QoS), retain: true}
			if subID != 0 {
				o.subIDs = []uint32{subID}
			}
			var ok bool
			if ops, ok = b.enqueue(s, o, ops); ok {
				retained = append(retained, o)
			}
		}
	}
	e := c.newEntry(ackPacket, 0)
	e.pkt = &packet.Suback{PacketID: p.PacketID, ReasonCodes: rcs}
	e.then = func() {
		for _, o := range retained {
			o.ready = true
		}
		b.pump(s)
	}
	if !b.saveSession(s, ops, func(error) {
		e.done = true
		c.flushAcks()
	}) {
		e.done = true
		c.flushAcks()
	}
	return true
}

// handleUnsubscribe answers UNSUBSCRIBE; it reports whether to keep reading.
//
// The syntax of each filter is checked here (the codec leaves it to the
// receiver, see packet.Unsubscribe): in 5.0 a filter that is not one gets
// UNSUBACK 0x8F Topic Filter invalid and the others are handled. 3.1.1 (and
// 3.1) UNSUBACK has no reason codes, and a filter breaking the wildcard rules
// (3.1.1 MQTT-4.7.1-2, -3) is a protocol violation, which closes the
// connection (MQTT-4.8.0-1), as mosquitto does, with nothing unsubscribed.
func (c *conn) handleUnsubscribe(p *packet.Unsubscribe) bool {
	b, s := c.b, c.s
	v5 := c.version == packet.V5
	if !v5 {
		for _, f := range p.Filters {
			if validFilter(f) != nil {
				b.stats.malformed.Add(1)
				c.closeWith(0)
				return false
			}
		}
	}
	ack := &packet.Unsuback{PacketID: p.PacketID}
	for _, f := range p.Filters {
		rc := packet.Success
		if validFilter(f) != nil {
			rc = packet.TopicFilterInvalid
		} else if _, ok := s.subs[f]; ok {
			delete(s.subs, f)
			b.subs.Remove(f, s.cid)
		} else {
			rc = packet.NoSubscriptionExisted
		}
		if v5 {
			ack.ReasonCodes = append(ack.ReasonCodes, rc)
		}
	}
	e := c.newEntry(ackPacket, 0)
	e.pkt = ack
	if !b.saveSession(s, nil, func(error) {
		e.done = true
		c.flushAcks()
	}) {
		e.done = true
		c.flushAcks()
	}
	return true
}

// validFilter checks the syntax of a SUBSCRIBE or UNSUBSCRIBE filter, which
// the codec leaves to the receiver (see packet.Subscribe): a topic filter,
// and a well-formed "$share/{group}/{filter}" when it starts with "$share/".
func validFilter(f string) error {
	if err := topic.ValidFilter(f); err != nil {
		return err
	}
	if _, _, shared, err := topic.ParseShared(f); shared && err != nil {
		return err
	}
	return nil
}

// cleanup runs when the connection ended, with b.mu held: the will, and the
// session's end or expiry.
func (c *conn) cleanup() {
	b := c.b
	c.closeWith(0)
	delete(b.conns, c)
	s := c.s
	if s == nil || s.conn != c {
		return
	}
	s.conn = nil
	w := c.will
	c.will = nil
	if b.closing {
		return
	}
	if w != nil {
		if d, ok := s.expiryDuration(); w.delay > 0 && (!ok || d > 0) {
			if ok {
				d = min(d, w.delay)
			} else {
				d = w.delay
			}
			s.pendingWill = w
			var t timer
			t = b.afterFunc(d, func() {
				b.post(func() {
					if s.willTimer != t || s.pendingWill != w || b.closing {
						return
					}
					s.pendingWill = nil
					s.willTimer = nil
					b.publishWill(w.m)
				})
			})
			s.willTimer = t
		} else {
			b.publishWill(w.m)
		}
	}
	if s.expiry == 0 {
		b.endSession(s)
		return
	}
	b.startExpiry(s)
}

// headRecorder passes reads through and keeps the first bytes read, so that
// the protocol level of a CONNECT the codec refuses is still known.
type headRecorder struct {
	r       io.Reader
	buf     [64]byte
	n       int
	stopped bool
}

func (h *headRecorder) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if !h.stopped && h.n < len(h.buf) {
		h.n += copy(h.buf[h.n:], p[:n])
	}
	return n, err
}

// stop ends recording once the CONNECT has been read.
func (h *headRecorder) stop() { h.stopped = true }

// connectLevel returns the Protocol Level of the CONNECT at the start of the
// recorded bytes, or 0 when they do not reach it.
func (h *headRecorder) connectLevel() packet.Version {
	b := h.buf[:h.n]
	if len(b) < 2 || b[0]>>4 != byte(packet.CONNECT) {
		return 0
	}
	i := 1
	for ; i < len(b) && i < 5; i++ { // Remaining Length: 1 to 4 bytes
		if b[i]&0x80 == 0 {
			break
		}
	}
	i++
	if i+2 > len(b) {
		return 0
	}
	i += 2 + (int(b[i])<<8 | int(b[i+1])) // Protocol Name
	if i >= len(b) {
		return 0
	}
	return packet.Version(b[i])
}

// connackCode is the CONNACK reason code for a codec error in a 5.0 CONNECT:
// the error's own code where CONNACK allows it (5.0 section 3.2.2.2), else
// 0x80 Unspecified error.
func connackCode(rc packet.ReasonCode) packet.ReasonCode {
	switch rc {
	case packet.MalformedPacket, packet.ProtocolError, packet.PacketTooLarge, packet.TopicNameInvalid,
		packet.ClientIdentifierNotValid, packet.PayloadFormatInvalid, packet.QoSNotSupported:
		return rc
	}
	return packet.UnspecifiedError
}
