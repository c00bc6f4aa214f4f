package uplink

import (
	"bufio"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/transport"
)

// connResult is how one connection ended.
type connResult struct {
	err       error
	connected bool          // CONNACK with success came
	upFor     time.Duration // time from CONNACK to the end
	stalled   bool
	inflight  int
	// suspect is the message sent alone (narrowed window) when the server
	// closed the connection (closedByServer) within poisonWindow of its
	// PUBLISH, still unanswered; nil otherwise.
	suspect *entry
}

// serverDisconnect is a DISCONNECT from the server.
type serverDisconnect struct {
	code packet.ReasonCode
	msg  string
}

func (d *serverDisconnect) Error() string {
	return fmt.Sprintf("server disconnected: %s (0x%02X)", d.msg, byte(d.code))
}

// closedByServer reports whether err ends a connection the way a server
// closes one because of what it received: a DISCONNECT with 0x81 malformed
// packet, 0x82 protocol error, 0x90 topic name invalid, 0x95 packet too
// large, 0x99 payload format invalid, 0x9A retain not supported or 0x9B
// QoS not supported (a server that did not announce its limit in the
// CONNACK, or lowered it since); or a close, orderly (EOF at a
// packet boundary; 3.1.1 has no other way) or a reset (a server that
// closes with the rest of a packet it refuses unread, as mosquitto does
// with an oversized one, resets the connection). A timeout, a stall, a
// DISCONNECT with another reason or a protocol error of the server's is
// not such a close.
func closedByServer(err error) bool {
	var d *serverDisconnect
	if errors.As(err, &d) {
		switch d.code {
		case packet.MalformedPacket, packet.ProtocolError, packet.TopicNameInvalid, packet.PacketTooLarge,
			packet.PayloadFormatInvalid, packet.RetainNotSupported, packet.QoSNotSupported:
			return true
		}
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// poisonWindow is how soon after a message sent alone a close must come
// to count against the message (see Client.afterLoss): eight times the
// round trip of the handshake (CONNECT to CONNACK), at least 250ms and at
// most 5s, unless a test set Client.poisonWin. A server closes at once on
// what it cannot accept, so its close comes within about one round trip;
// the cuts of a failing network come at any time, and rarely within this
// window five times in a row.
func (s *conn) poisonWindow() time.Duration {
	if w := s.c.poisonWin; w > 0 {
		return w
	}
	return min(max(8*s.rtt, 250*time.Millisecond), 5*time.Second)
}

// errStalled ends a connection on which nothing was acknowledged for
// StallTimeout.
var errStalled = errors.New("uplink: link stalled: no acknowledgement within the stall timeout")

// conn is the state of one network connection. Its loop runs on the Run
// goroutine and owns the Client's forwarding state while it runs.
type conn struct {
	c         *Client
	nc        net.Conn
	bw        *bufio.Writer
	unflushed []*entry // QoS 0 messages written to bw, not yet flushed
	buf       []byte
	v         packet.Version
	ctx       context.Context // cancelled when the connection ends
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	session   bool // CONNACK Session Present

	// Server limits from CONNACK.
	window      int
	maxQoS      byte
	retain      bool
	maxPacket   uint32
	aliases     *aliasCache
	keepAlive   time.Duration
	connackedAt time.Time

	// acking: a message has been acknowledged on this connection, or
	// nothing waited to be sent (State says "connected" from then on).
	acking  bool
	leaseAt time.Time // when the Lease in progress started
	solo    *entry    // the last QoS 1/2 message sent while the window was narrowed
	soloAt  time.Time // when it was written
	// The hold of the Client's suspect message (see hold).
	holdT      *time.Timer      // fires a poison window after its PINGREQ; nil: not begun
	holdC      <-chan time.Time // holdT's channel until it fired, then nil
	probing    bool             // the hold's PINGREQ awaits its PINGRESP
	rtt        time.Duration    // round trip of the handshake, CONNECT to CONNACK
	inflight   int              // QoS 1/2 PUBLISH/PUBREL awaiting an answer (control packets included)
	next       int              // pump resumes here in c.pending
	progressAt time.Time
	lastSend   time.Time
	lastRecv   time.Time
	pingAt     time.Time // zero: no PINGREQ outstanding
	ctrl       map[uint16]string

	pkts    chan readResult
	leaseCh chan leaseResult
	leasing bool
	leaseCx context.Context
	leaseCf context.CancelFunc
	marks   chan markResult
	relQ    []*entry // PUBREC came, in arrival order: PUBREL goes out in this order
	// unrel counts, per topic, QoS 2 PUBLISHes whose PUBREL is not sent
	// yet: the server delivers a QoS 2 message only at PUBREL, so a QoS
	// 0/1 message or a PUBREL on that topic waits for it to keep the
	// topic in order.
	unrel map[string]int

	dlQueue []*packet.Publish
	dlCh    chan *packet.Publish
	dlDone  chan *packet.Publish
	dlCur   *packet.Publish // with the worker; nil when it is idle
	dlQoS0  int

	draining   bool
	drainUntil time.Time
	stalled    bool
}

type readResult struct {
	p   packet.Packet
	err error
}

type leaseResult struct {
	msgs []Message
	err  error
}

type markResult struct {
	e   *entry
	id  uint16
	err error
}

// connection dials, runs one connection to its end and restores the
// forwarding state for the next one.
func (c *Client) connection(ctx context.Context) (res connResult) {
	o := &c.opts
	s := &conn{c: c, v: o.Protocol, ctrl: make(map[uint16]string), unrel: make(map[string]int)}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	defer s.cancel()

	dctx, dcancel := context.WithTimeout(ctx, o.ConnectTimeout)
	nc, err := transport.Dial(dctx, o.URL, transport.DialOptions{TLS: o.TLS, ConnectTimeout: o.ConnectTimeout})
	dcancel()
	if err != nil {
		return connResult{err: fmt.Errorf("dial: %w", err)}
	}
	s.nc = nc
	s.bw = bufio.NewWriterSize(nc, 64<<10)
	defer func() {
		nc.Close()
		s.teardown()
		res.inflight = s.inflight
	}()
	r := packet.NewReader(nc, 0)
	r.SetVersion(s.v)
	if err := s.handshake(ctx, r); err != nil {
		return connResult{err: err}
	}
	res.connected = true
	s.connackedAt = time.Now()
	err = s.loop(ctx, r)
	if pe := (*packet.Error)(nil); s.v == packet.V5 && errors.As(err, &pe) {
		// Tell the server why (best effort: the link may be what failed).
		s.nc.SetWriteDeadline(time.Now().Add(time.Second))
		if s.write(&packet.Disconnect{ReasonCode: pe.Code}) == nil {
			s.bw.Flush()
		}
	}
	res.err = err
	res.upFor = time.Since(s.connackedAt)
	res.stalled = s.stalled
	if e := s.solo; e != nil && !e.done && e.state == stSent && time.Since(s.soloAt) <= s.poisonWindow() &&
		closedByServer(err) {
		res.suspect = e
	}
	return res
}

// handshake sends CONNECT, reads CONNACK and applies what it says.
func (s *conn) handshake(ctx context.Context, r *packet.Reader) error {
	c, o := s.c, &s.c.opts
	cp := &packet.Connect{
		ProtocolName: "MQTT",
		Version:      s.v,
		CleanStart:   o.CleanStart,
		KeepAlive:    uint16(o.KeepAlive / time.Second),
		ClientID:     c.clientID,
	}
	if s.v == packet.V5 {
		cp.Properties.SessionExpiry, cp.Properties.HasSessionExpiry = uint32(o.SessionExpiry/time.Second), true
		cp.Properties.ReceiveMaximum, cp.Properties.HasReceiveMaximum = DownlinkReceiveMaximum, true
	}
	if o.Username != "" {
		cp.UsernameFlag, cp.Username = true, o.Username
	}
	if o.Password != "" {
		cp.PasswordFlag, cp.Password = true, []byte(o.Password)
	}
	if w := o.Will; w != nil {
		cp.WillFlag, cp.WillTopic, cp.WillPayload = true, w.Topic, w.Payload
		cp.WillQoS, cp.WillRetain = c.willQoS, c.willRetain
	}
	deadline := time.Now().Add(o.ConnectTimeout)
	s.nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { s.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := s.write(cp); err != nil {
		return fmt.Errorf("send CONNECT: %w", err)
	}
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("send CONNECT: %w", err)
	}
	sentAt := time.Now()
	p, err := r.ReadPacket()
	if err != nil {
		return fmt.Errorf("waiting for CONNACK: %w", err)
	}
	s.rtt = time.Since(sentAt)
	s.nc.SetDeadline(time.Time{})
	ack, ok := p.(*packet.Connack)
	if !ok {
		return fmt.Errorf("protocol error: %v instead of CONNACK", p.Type())
	}
	if ack.ReasonCode != 0 {
		return s.refused(ack)
	}
	pr := &ack.Properties
	s.session = ack.SessionPresent && !o.CleanStart
	if !s.session {
		c.forgetDownlinkIDs()
	}
	c.removeForgottenMarks()
	s.window = min(o.Inflight, maxWindow)
	if pr.HasReceiveMaximum && int(pr.ReceiveMaximum) < s.window && pr.ReceiveMaximum > 0 {
		s.window = int(pr.ReceiveMaximum)
	}
	s.maxQoS = 2
	if pr.HasMaximumQoS && pr.MaximumQoS < 2 {
		s.maxQoS = pr.MaximumQoS
	}
	s.retain = !pr.HasRetainAvailable || pr.RetainAvailable == 1
	s.maxPacket = packet.MaxPacketSize
	if pr.HasMaximumPacketSize && pr.MaximumPacketSize > 0 {
		s.maxPacket = pr.MaximumPacketSize
	}
	if s.v == packet.V5 && pr.HasTopicAliasMaximum && pr.TopicAliasMaximum > 0 {
		s.aliases = newAliasCache(pr.TopicAliasMaximum)
	}
	s.keepAlive = o.KeepAlive
	if pr.HasServerKeepAlive {
		s.keepAlive = time.Duration(pr.ServerKeepAlive) * time.Second
	}
	if pr.HasAssignedClientID && pr.AssignedClientID != "" {
		c.clientID = pr.AssignedClientID
	}
	now := time.Now()
	s.lastSend, s.lastRecv, s.progressAt = now, now, now
	c.update(func(st *Status) {
		st.Connects++
		st.SessionPresent = s.session
		st.ClientID = c.clientID
		st.Window = s.window
		st.LastError = ""
	})
	c.setState(StateWaiting)
	c.log.Info("upstream connected", "url", redact(o.URL), "client_id", c.clientID, "protocol", s.v.String(),
		"session_present", s.session, "window", s.window, "max_qos", s.maxQoS, "retain_available", s.retain,
		"max_packet_size", s.maxPacket, "topic_alias_max", pr.TopicAliasMaximum, "keep_alive", s.keepAlive,
		"pending", len(c.pending)-c.doneCount, "down_for", time.Since(c.downSince).Round(time.Millisecond),
		"attempts", c.failures+1)
	switch s.maxQoS {
	case 1:
		c.warnOnce("maxqos1", "upstream accepts QoS 1 at most: QoS 2 messages are sent with QoS 1 (at least once)",
			"max_qos", s.maxQoS)
	case 0:
		c.warnOnce("maxqos0", "upstream accepts QoS 0 only: QoS 1 and 2 messages are sent with QoS 0 (at most once)",
			"max_qos", s.maxQoS)
	}
	return nil
}

// refused turns a CONNACK error into an error, adapting the will for the
// next attempt when the server refused it for a reason it told.
func (s *conn) refused(ack *packet.Connack) error {
	c := s.c
	code := ack.ReasonCode
	if s.v == packet.V5 {
		switch code {
		case packet.RetainNotSupported:
			if c.willRetain {
				c.willRetain = false
				c.log.Warn("upstream refuses retained wills: the will is sent without retain")
			}
		case packet.QoSNotSupported:
			if c.willQoS > 0 {
				c.willQoS--
				c.log.Warn("upstream refuses the will's QoS: lowered", "qos", c.willQoS)
			}
		}
		msg := code.String()
		if ack.Properties.HasReasonString {
			msg += ": " + ack.Properties.ReasonString
		}
		return fmt.Errorf("connection refused: %s (0x%02X)", msg, byte(code))
	}
	names := map[packet.ReasonCode]string{
		packet.ConnRefusedProtocolVersion:    "unacceptable protocol version",
		packet.ConnRefusedIdentifierRejected: "identifier rejected",
		packet.ConnRefusedServerUnavailable:  "server unavailable",
		packet.ConnRefusedBadUsernameOrPass:  "bad user name or password",
		packet.ConnRefusedNotAuthorized:      "not authorized",
	}
	msg, ok := names[code]
	if !ok {
		msg = "unknown return code"
	}
	return fmt.Errorf("connection refused: %s (%d)", msg, byte(code))
}

// loop runs the connection: it reads packets, sends messages within the
// window and watches keep alive, stalls and ctx.
func (s *conn) loop(ctx context.Context, r *packet.Reader) error {
	c := s.c
	s.pkts = make(chan readResult, 64)
	s.leaseCh = make(chan leaseResult, 1)
	s.marks = make(chan markResult, s.window+8)
	s.dlCh = make(chan *packet.Publish, 1)
	s.dlDone = make(chan *packet.Publish, 1)
	s.leaseCx, s.leaseCf = context.WithCancel(s.ctx)
	s.wg.Add(1)
	go s.reader(r)
	if c.down != nil {
		s.wg.Add(1)
		go s.downlinkWorker()
	}

	if err := s.resume(); err != nil {
		return err
	}
	if err := s.subscribe(); err != nil {
		return err
	}
	if err := s.birth(); err != nil {
		return err
	}

	tick := s.tickInterval()
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	done := ctx.Done()
	for {
		if err := s.pump(); err != nil {
			return err
		}
		s.requestLease()
		s.feedDownlink()
		if s.draining && (s.inflight == 0 || !time.Now().Before(s.drainUntil)) {
			return s.disconnect()
		}
		// Flush once the reader has handed over nothing more, or 16 KiB
		// are buffered.
		if s.bw.Buffered() > 0 && (len(s.pkts) == 0 || s.bw.Buffered() >= 16<<10) {
			if err := s.flush(); err != nil {
				return err
			}
		}
		var err error
		select {
		case rr := <-s.pkts:
			if rr.err != nil {
				return rr.err
			}
			s.lastRecv = time.Now()
			err = s.handle(rr.p)
		case lr := <-s.leaseCh:
			s.leasing = false
			err = s.leased(lr)
		case m := <-s.marks:
			err = s.marked(m)
		case p := <-s.dlDone:
			err = s.delivered(p)
		case now := <-ticker.C:
			err = s.tick(now)
		case <-s.holdC:
			s.holdC = nil // pump sends the suspect now, if its PINGRESP came
		case <-done:
			done = nil
			s.startDrain()
		}
		if err != nil {
			return err
		}
	}
}

func (s *conn) tickInterval() time.Duration {
	d := time.Second
	if k := s.keepAlive / 4; k > 0 && k < d {
		d = k
	}
	if st := s.c.opts.StallTimeout / 4; st > 0 && st < d {
		d = st
	}
	if b := s.c.opts.Backoff.Initial / 2; b < d { // resume after a pause
		d = b
	}
	if d < 20*time.Millisecond {
		d = 20 * time.Millisecond
	}
	return d
}

// tick checks keep alive, stall and pause.
func (s *conn) tick(now time.Time) error {
	c := s.c
	if st := c.opts.StallTimeout; st > 0 && s.inflight > 0 && now.Sub(s.progressAt) >= st {
		s.stalled = true
		c.update(func(st *Status) { st.Stalls++ })
		c.setState(StateStalled)
		return errStalled
	}
	if ka := s.keepAlive; ka > 0 {
		if !s.pingAt.IsZero() && now.Sub(s.pingAt) >= ka && s.lastRecv.Before(s.pingAt) {
			return errors.New("keep alive timeout: no PINGRESP")
		}
		if s.pingAt.IsZero() && now.Sub(s.lastSend) >= ka/2 {
			if err := s.write(&packet.Pingreq{}); err != nil {
				return err
			}
			s.pingAt = now
		}
	}
	if s.inflight > 0 || c.pauseUntil.After(now) {
		c.update(func(st *Status) { st.InFlight = s.inflight })
	}
	if !s.acking && !s.draining && s.inflight == 0 && s.next >= len(c.pending) && !c.pauseUntil.After(now) &&
		s.leasing && now.Sub(s.leaseAt) >= idleAfter {
		// Nothing in flight, nothing left to send, and the Source has had
		// nothing to hand out for a while: nothing waits for an ack.
		s.confirmed()
	}
	return nil
}

// idleAfter is how long a Lease must have been waiting before a connection
// with nothing in flight counts as one on which nothing waits (a Lease of
// a non-empty queue returns within milliseconds).
const idleAfter = 100 * time.Millisecond

// confirmed notes that the link is proven: a message was acknowledged, or
// nothing waits. State becomes "connected" the first time.
func (s *conn) confirmed() {
	if !s.acking {
		s.acking = true
		s.c.setState(StateConnected)
	}
}

// reader reads packets until the connection fails.
func (s *conn) reader(r *packet.Reader) {
	defer s.wg.Done()
	for {
		p, err := r.ReadPacket()
		select {
		case s.pkts <- readResult{p, err}:
		case <-s.ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// write encodes p into the write buffer.
func (s *conn) write(p packet.Packet) error {
	var err error
	s.buf, err = packet.Append(s.buf[:0], p, s.v)
	if err != nil {
		return err
	}
	if len(s.buf) > s.bw.Available() {
		// bw writes to the socket now; otherwise only flush does, and it
		// sets its own deadline.
		s.nc.SetWriteDeadline(time.Now().Add(s.writeTimeout()))
	}
	_, err = s.bw.Write(s.buf)
	if len(s.buf) > 64<<10 {
		s.buf = nil // do not keep a large message's buffer
	}
	return err
}

func (s *conn) writeTimeout() time.Duration {
	d := s.c.opts.StallTimeout
	if d <= 0 {
		d = DefaultStallTimeout
	}
	if s.keepAlive > d {
		d = s.keepAlive
	}
	return d
}

func (s *conn) flush() error {
	s.nc.SetWriteDeadline(time.Now().Add(s.writeTimeout()))
	if err := s.bw.Flush(); err != nil {
		return err
	}
	s.lastSend = time.Now()
	for i, e := range s.unflushed {
		s.complete(e)
		s.unflushed[i] = nil
	}
	s.unflushed = s.unflushed[:0]
	return nil
}

// resume prepares the entries left from earlier connections: with a
// session they go out again with their ids (PUBREL for those whose PUBREC
// came); without one, or when it was sent with a QoS above the server's
// Maximum QoS now, an entry goes out as a new message under its id.
// That includes a QoS 2 message whose PUBREC came: mosquitto delivers QoS 2
// at PUBREL, so a server that lost the session between PUBREC and PUBREL
// never delivered it. (A server that delivers at PUBLISH time and lost its
// session delivers it twice: exactly once cannot survive the upstream
// losing its session; at least once is kept.)
func (s *conn) resume() error {
	c := s.c
	c.ctrlNext = 0
	for _, e := range c.pending {
		if e.done {
			continue
		}
		e.state = stQueued
		if !s.session || (e.sent && e.sentQoS > s.maxQoS) {
			// No flow to resume: the server holds none, or this one (its
			// Maximum QoS lowered since) would refuse a QoS 2 resend
			// (DISCONNECT 0x9B). A new PUBLISH; a rec: mark is replaced
			// before it.
			e.sent, e.rec = false, false
		}
	}
	s.next = 0
	return nil
}

// subscribe sends the configured subscriptions. MQTT 5 subscribes after
// every connect with Retain Handling 1 (retained messages only for a new
// subscription); 3.1.1, which cannot say that, subscribes when the session
// is new and on the first connect of Run (the configuration may have
// changed since the session was made).
func (s *conn) subscribe() error {
	c := s.c
	subs := c.opts.Subscriptions
	if len(subs) == 0 || (s.v == packet.V311 && s.session && !c.firstConn) {
		c.firstConn = false
		return nil
	}
	c.firstConn = false
	id, err := c.allocCtrl()
	if err != nil {
		return err
	}
	sp := &packet.Subscribe{PacketID: id}
	for _, sub := range subs {
		ps := packet.Subscription{Filter: sub.Filter, QoS: sub.QoS}
		if s.v == packet.V5 {
			ps.RetainHandling = 1
		}
		sp.Subscriptions = append(sp.Subscriptions, ps)
	}
	s.ctrl[sp.PacketID] = "subscribe"
	s.inflightInc() // a missing SUBACK counts as a stall
	return s.write(sp)
}

// birth publishes the birth message (QoS 1 at most: it is republished on
// every connect, so QoS 2's extra round trip buys nothing).
func (s *conn) birth() error {
	b := s.c.opts.Birth
	if b == nil {
		return nil
	}
	return s.publishCtrl(b, "birth")
}

func (s *conn) publishCtrl(m *WillMessage, kind string) error {
	qos := min(m.QoS, 1, s.maxQoS)
	p := &packet.Publish{QoS: qos, Retain: m.Retain && s.retain, Topic: m.Topic, Payload: m.Payload}
	if qos > 0 {
		id, err := s.c.allocCtrl()
		if err != nil {
			return err
		}
		p.PacketID = id
		s.ctrl[p.PacketID] = kind
		s.inflightInc()
	}
	return s.write(p)
}

func (s *conn) inflightInc() {
	if s.inflight == 0 {
		s.progressAt = time.Now()
	}
	s.inflight++
}

// startDrain begins the clean shutdown.
func (s *conn) startDrain() {
	c := s.c
	s.draining = true
	s.drainUntil = time.Now().Add(DrainTimeout)
	s.leaseCf()
	c.setState(StateDraining)
	if w := c.opts.Will; w != nil && s.v == packet.V311 {
		if err := s.publishCtrl(w, "will"); err != nil {
			c.log.Warn("publishing the will at shutdown failed", "err", err)
		}
	}
}

// disconnect ends the connection cleanly.
func (s *conn) disconnect() error {
	d := &packet.Disconnect{}
	if s.v == packet.V5 && s.c.opts.Will != nil {
		d.ReasonCode = packet.DisconnectWithWill
	}
	if err := s.write(d); err != nil {
		return err
	}
	if err := s.flush(); err != nil {
		return err
	}
	if s.inflight > 0 {
		s.c.log.Info("upstream disconnected with messages in flight; they are sent again after restart",
			"in_flight", s.inflight)
	}
	return context.Canceled
}

// requestLease starts a Lease when the window could use more messages.
func (s *conn) requestLease() {
	c := s.c
	if s.leasing || s.draining {
		return
	}
	// Keep up to ahead messages leased; lease again when half are used, in
	// batches, since every Lease costs a seek in the store.
	ahead := min(max(4*s.window, 64), 4*maxLeaseBatch)
	live := len(c.pending) - c.doneCount
	if live > ahead/2 {
		return
	}
	n := min(ahead-live, maxLeaseBatch)
	s.leasing, s.leaseAt = true, time.Now()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		msgs, err := c.src.Lease(s.leaseCx, n)
		if err != nil && s.leaseCx.Err() == nil {
			// Pace retries of a failing Source.
			t := time.NewTimer(time.Second)
			select {
			case <-t.C:
			case <-s.leaseCx.Done():
				t.Stop()
			}
		}
		s.leaseCh <- leaseResult{msgs, err} // buffered; read by loop or teardown
	}()
}

// leased appends newly leased messages to pending. A seq already pending
// (not done) is skipped: a Source that handed it out twice would otherwise
// have it sent twice, a QoS 2 message under two ids, delivered twice. A
// done one is taken: its Ack failed and the Source leases it again.
func (s *conn) leased(lr leaseResult) error {
	c := s.c
	if lr.err != nil {
		if s.leaseCx.Err() == nil {
			c.warnOnce("lease:"+lr.err.Error(), "queue lease failed; retrying", "err", lr.err)
		}
		return nil
	}
	// One allocation for the batch: pending keeps it until its last
	// entry is compacted away.
	block := make([]entry, len(lr.msgs))
	for i := range lr.msgs {
		if seq := lr.msgs[i].Seq; seq > c.topSeq {
			c.topSeq = seq
		} else if c.isPending(seq) {
			c.warnOnce("duplease", "queue handed out a message already leased; ignoring the second lease", "seq", seq)
			continue
		}
		e := &block[i]
		e.Message, e.mark = &lr.msgs[i], string(lr.msgs[i].Mark)
		if e.mark != "" {
			kind, id, ok := parseMark(e.Mark)
			switch {
			case !ok:
				c.warnOnce("badmark", "ignoring a queue mark this version did not write (replaced when the message is sent)",
					"seq", e.Seq)
			case s.maxQoS < 2:
				// A mark of a QoS 2 flow, and this server takes QoS 1 at
				// most (its limit was lowered since, or an older version
				// marked a message it sent with QoS 1): resuming the flow
				// would be a QoS 2 PUBLISH or PUBREL, which it refuses
				// (DISCONNECT 0x9B). The message goes out anew with the
				// QoS allowed; placeID removes the mark before that.
			case c.ids.has(id) && s.session && s.ctrl[id] != "":
				// A control packet of this connection took the id before
				// the message was leased (marks of a version that gave
				// messages ids in the control range): wait for its
				// answer, then resume under the id the server knows.
				e.id, e.sent, e.sentQoS, e.waitCtrl = id, true, 2, true
				e.rec = kind == markRec
			case c.ids.has(id):
				c.log.Warn("packet id of a stored mark is in use; sending the message anew", "seq", e.Seq, "packet_id", id)
			case !s.session:
				// The server holds none of the client's flows: a new
				// PUBLISH under the id the mark names, also after PUBREC
				// (see resume; placeID replaces the rec: mark first).
				c.takeID(e, id)
			default:
				c.takeID(e, id)
				e.sent, e.sentQoS, e.rec = true, 2, kind == markRec
			}
		}
		c.pending = append(c.pending, e)
	}
	return nil
}

// isPending reports whether an entry of seq is pending and not done. The
// Source leases in queue order, so leased calls it only for a seq at or
// below the highest leased so far: one leased again after a failed Ack,
// or one a Source hands out twice.
func (c *Client) isPending(seq uint64) bool {
	for _, e := range c.pending {
		if e.Seq == seq && !e.done {
			return true
		}
	}
	return false
}

// pump sends queued entries in order while the window has room.
func (s *conn) pump() error {
	c := s.c
	if s.draining {
		return nil
	}
	if !c.pauseUntil.IsZero() {
		if time.Now().Before(c.pauseUntil) {
			return nil
		}
		c.pauseUntil = time.Time{} // over: no clock read per turn from here
	}
	c.compact(s)
	for i := s.next; i < len(c.pending); i++ {
		e := c.pending[i]
		if e.done || e.state != stQueued {
			continue
		}
		if e.waitCtrl {
			if s.ctrl[e.id] != "" {
				s.next = i
				return nil
			}
			e.waitCtrl = false
			c.takeID(e, e.id)
		}
		qos := s.qosOf(e)
		if (qos > 0 || e.rec) && s.inflight >= s.win() {
			s.next = i
			return nil
		}
		if (qos < 2 || e.rec) && s.unrel[e.Topic] > 0 {
			// Behind a QoS 2 message on the same topic whose PUBREL is not
			// out yet. A PUBREL resend waits too: after a restart, the
			// mark of a later message may be durable and an earlier one's
			// not, and the server delivers at PUBREL.
			s.next = i
			return nil
		}
		if c.suspected && e.Seq == c.suspectSeq && !s.holdOver() {
			if err := s.hold(); err != nil {
				return err
			}
			s.next = i
			return nil
		}
		if err := s.send(e); err != nil {
			return err
		}
	}
	s.next = len(c.pending)
	return nil
}

// hold keeps the Client's suspect message (see Client.afterLoss) back
// until the link has idled for a poison window and answered a PINGREQ
// sent at its start (counted in flight, so a link that swallows it
// stalls); holdOver says when that is over. A connection that dies during
// the hold shows a failing network, not a refusing server; one that lives
// through it shows a link that carries packets both ways, so a close right
// after the PUBLISH that follows is likely the server's answer to it.
func (s *conn) hold() error {
	if s.holdT != nil {
		return nil // begun: holdOver says when it is over
	}
	if err := s.write(&packet.Pingreq{}); err != nil {
		return err
	}
	if s.pingAt.IsZero() {
		s.pingAt = time.Now() // keep alive waits for its PINGRESP too
	}
	s.probing = true
	s.inflightInc()
	s.holdT = time.NewTimer(s.poisonWindow())
	s.holdC = s.holdT.C
	s.c.log.Debug("holding back a message the upstream may have closed the connection on, while the link idles",
		"seq", s.c.suspectSeq, "window", s.poisonWindow())
	return nil
}

// holdOver reports whether the hold (see hold) began and is over: its
// window passed and its PINGREQ was answered.
func (s *conn) holdOver() bool { return s.holdT != nil && s.holdC == nil && !s.probing }

// qosOf is the QoS e goes out with on this connection.
func (s *conn) qosOf(e *entry) byte {
	if e.sent {
		return e.sentQoS
	}
	return min(e.QoS, s.maxQoS)
}

// released notes that e no longer holds back its topic.
func (s *conn) released(e *entry) {
	if e.unrel {
		e.unrel = false
		if s.unrel[e.Topic]--; s.unrel[e.Topic] <= 0 {
			delete(s.unrel, e.Topic)
		}
	}
}

// send puts one entry on the wire (or dead-letters it).
func (s *conn) send(e *entry) error {
	c := s.c
	if e.rec {
		// PUBREC came earlier (this process or before a restart) and the
		// session survived: complete the flow.
		e.state = stReleased
		s.inflightInc()
		return s.write(&packet.Pubrel{PacketID: e.id})
	}
	resend := e.sent && s.session
	var expiry uint32
	if !e.Expires.IsZero() {
		left := time.Until(e.Expires)
		if left <= 0 && !resend {
			c.update(func(st *Status) { st.Expired++ })
			return s.deadLetter(e, "expired")
		}
		expiry = uint32(max((left+time.Second-1)/time.Second, 1))
	}
	qos := s.qosOf(e)
	p := &packet.Publish{QoS: qos, Retain: e.Retain && s.retain, Topic: e.Topic, Payload: e.Payload, Dup: resend}
	if s.v == packet.V5 {
		pr := &p.Properties
		if e.PayloadFormat != 0 {
			pr.PayloadFormat, pr.HasPayloadFormat = e.PayloadFormat, true
		}
		if expiry > 0 {
			pr.MessageExpiry, pr.HasMessageExpiry = expiry, true
		}
		if e.ContentType != "" {
			pr.ContentType, pr.HasContentType = e.ContentType, true
		}
		if e.ResponseTopic != "" {
			pr.ResponseTopic, pr.HasResponseTopic = e.ResponseTopic, true
		}
		if len(e.CorrelationData) > 0 {
			pr.CorrelationData, pr.HasCorrelationData = e.CorrelationData, true
		}
		pr.UserProperties = e.UserProperties
	}
	if qos > 0 {
		p.PacketID = 1 // for the size; the real id is set below
	}
	size, err := packet.Size(p, s.v)
	if err != nil {
		return s.deadLetter(e, "cannot be encoded: "+err.Error())
	}
	if uint32(size) > s.maxPacket {
		return s.deadLetter(e, fmt.Sprintf("packet too large: %d bytes, upstream maximum packet size %d", size, s.maxPacket))
	}
	if s.aliases != nil {
		alias, known := s.aliases.lookup(e.Topic)
		switch {
		case known:
			p.Topic, p.Properties.TopicAlias, p.Properties.HasTopicAlias = "", alias, true
		case uint32(size)+3 <= s.maxPacket:
			s.aliases.assign(e.Topic, alias)
			p.Properties.TopicAlias, p.Properties.HasTopicAlias = alias, true
		}
	}
	if qos == 0 {
		p.PacketID, p.Dup = 0, false
		if err := s.write(p); err != nil {
			return err
		}
		// Acked in the source only once flushed to the socket: a message
		// still in the write buffer when the link fails goes again.
		e.state = stSent
		s.unflushed = append(s.unflushed, e)
		return nil
	}
	if ok, err := s.placeID(e, qos); !ok {
		return err
	}
	p.PacketID = e.id
	if err := s.write(p); err != nil {
		return err
	}
	e.sent, e.sentQoS, e.state = true, qos, stSent
	if c.narrowed {
		s.solo, s.soloAt = e, time.Now()
	}
	if qos == 2 {
		e.unrel = true
		s.unrel[e.Topic]++
	}
	s.inflightInc()
	return nil
}

// placeID gives e its packet id for a PUBLISH with QoS qos (1 or 2): the
// one it holds (an entry keeps its id until it is done, refusals and lost
// sessions included), or, when it has none yet or the server said that one
// is in use, the first free one from its derived id. Before the PUBLISH is
// written the stored mark is brought in line with it: "pub:<id>" when it
// goes out with QoS 2 under an id that is not the derived one; no mark when
// the id is the derived one or the QoS is 1 (a message of QoS 2 sent with
// QoS 1 under a server's Maximum QoS 1 has no QoS 2 flow to resume). A
// restarted client resends the message under the id the mark names, and as
// QoS 2, so a stale mark (left by a refusal, a lost session, a "rec:" whose
// flow the server no longer has, or a QoS 2 flow given up for QoS 1) would
// be an id or a QoS the server does not know the message by. It returns
// false when the PUBLISH must not be written: the message left the source
// (e is finished; nil error), or Mark failed.
func (s *conn) placeID(e *entry, qos byte) (bool, error) {
	c := s.c
	id := e.id
	if id == 0 || e.newID {
		if id = c.ids.next(derivedID(e.Seq)); id == 0 {
			return false, errors.New("uplink: no free packet id")
		}
	}
	want := ""
	if qos == 2 && id != derivedID(e.Seq) {
		want = string(markData(markPub, id))
	}
	if e.mark != want {
		err := c.src.Mark(s.ctx, e.Seq, []byte(want))
		if errors.Is(err, ErrGone) {
			c.log.Debug("message left the queue before it was sent", "seq", e.Seq)
			c.retire(e)
			return false, nil
		}
		if err != nil {
			e.mark = markUnknown
			return false, fmt.Errorf("queue mark of seq %d: %w", e.Seq, err)
		}
		e.mark = want
	}
	if id != e.id {
		c.dropID(e)
		c.takeID(e, id)
	}
	e.newID = false
	return true, nil
}

// complete finishes an entry the upstream has: Source ack, id freed.
func (s *conn) complete(e *entry) {
	c := s.c
	c.retire(e)
	c.acks.add(e.Seq)
	c.update(func(st *Status) { st.Forwarded++ })
}

// win is the window in force: 1 while narrowed (see Client.narrowTo).
func (s *conn) win() int {
	if s.c.narrowed {
		return 1
	}
	return s.window
}

// deadLetter moves e to the dead-letter store.
func (s *conn) deadLetter(e *entry, reason string) error { return s.c.deadLetter(s.ctx, e, reason) }

// compact drops finished entries from pending once they are half of it.
func (c *Client) compact(s *conn) {
	if c.doneCount < 32 || c.doneCount*2 < len(c.pending) {
		return
	}
	out := c.pending[:0]
	for _, e := range c.pending {
		if !e.done {
			out = append(out, e)
		}
	}
	clear(c.pending[len(out):])
	c.pending, c.doneCount = out, 0
	s.next = 0
}

// handle processes one packet from the server.
func (s *conn) handle(p packet.Packet) error {
	c := s.c
	switch p := p.(type) {
	case *packet.Puback:
		return s.acked(p.PacketID, packet.PUBACK, p.ReasonCode, &p.Properties)
	case *packet.Pubrec:
		return s.acked(p.PacketID, packet.PUBREC, p.ReasonCode, &p.Properties)
	case *packet.Pubcomp:
		e := c.byID[p.PacketID]
		if e == nil || e.state != stReleased {
			c.log.Debug("PUBCOMP for an unknown packet id", "packet_id", p.PacketID)
			return nil
		}
		// 0x92 (packet identifier not found) means the server completed
		// the flow before: PUBREC came, so it has the message.
		s.progress()
		s.confirmed()
		c.closes = 0
		s.complete(e)
		return nil
	case *packet.Publish:
		return s.incoming(p)
	case *packet.Pubrel:
		if c.rx[p.PacketID] || c.restored[p.PacketID] {
			if md, ok := c.down.(MarkedDownlink); ok {
				// Durable before PUBCOMP: the server may reuse the id then.
				if err := md.Unmark(p.PacketID); err != nil {
					return fmt.Errorf("removing downlink mark %d: %w", p.PacketID, err)
				}
			}
			delete(c.rx, p.PacketID)
			delete(c.restored, p.PacketID)
		}
		return s.write(&packet.Pubcomp{PacketID: p.PacketID})
	case *packet.Suback:
		if s.ctrl[p.PacketID] != "subscribe" {
			return nil
		}
		delete(s.ctrl, p.PacketID)
		c.ids.del(p.PacketID)
		s.progress()
		for i, code := range p.ReasonCodes {
			if code.IsError() && i < len(c.opts.Subscriptions) {
				err := fmt.Errorf("subscription %q refused: %v (0x%02X)", c.opts.Subscriptions[i].Filter, code, byte(code))
				c.log.Error("upstream refused a subscription", "filter", c.opts.Subscriptions[i].Filter, "reason", code.String())
				c.setError(err)
			}
		}
		return nil
	case *packet.Pingresp:
		s.pingAt = time.Time{}
		if s.probing { // the hold's PINGREQ (see hold)
			s.probing = false
			s.inflight--
			s.progressAt = s.lastRecv
		}
		return nil
	case *packet.Disconnect:
		msg := p.ReasonCode.String()
		if p.Properties.HasReasonString {
			msg += ": " + p.Properties.ReasonString
		}
		return &serverDisconnect{code: p.ReasonCode, msg: msg}
	default:
		return packet.Errorf(packet.ProtocolError, "unexpected %v from server", p.Type())
	}
}

// progress records an answer to a packet in flight, received at
// s.lastRecv (handle runs for a packet just received).
func (s *conn) progress() {
	now := s.lastRecv
	s.progressAt = now
	if s.inflight > 0 {
		s.inflight--
	}
	n := s.inflight
	s.c.update(func(st *Status) { st.LastAck, st.InFlight = now, n })
}

// acked handles PUBACK and PUBREC.
func (s *conn) acked(id uint16, t packet.Type, code packet.ReasonCode, pr *packet.Properties) error {
	c := s.c
	if kind, ok := s.ctrl[id]; ok && t == packet.PUBACK {
		delete(s.ctrl, id)
		c.ids.del(id)
		s.progress()
		if code.IsError() {
			c.log.Warn("upstream refused the "+kind+" message", "reason", code.String())
		} else {
			s.confirmed()
		}
		return nil
	}
	e := c.byID[id]
	if e == nil || e.state != stSent || (t == packet.PUBACK) != (e.sentQoS == 1) {
		if e != nil && t == packet.PUBREC && e.state == stReleased {
			return s.write(&packet.Pubrel{PacketID: id})
		}
		c.log.Debug("acknowledgement for an unknown packet id", "type", t.String(), "packet_id", id)
		return nil
	}
	s.progress()
	if code.IsError() {
		return s.refusal(e, code, pr)
	}
	s.confirmed()
	if c.pauseGrown {
		c.pause.Reset()
		c.pauseGrown = false
	}
	c.closes = 0
	if c.suspected && e.Seq == c.suspectSeq {
		c.suspected = false // answered: the server does not close on it
	}
	if t == packet.PUBACK {
		s.complete(e)
		return nil
	}
	// PUBREC: store the progress durably before PUBREL is sent.
	e.state = stMarking
	s.relQ = append(s.relQ, e)
	s.inflight++ // still in flight until PUBCOMP
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := c.src.Mark(s.ctx, e.Seq, markData(markRec, id))
		s.marks <- markResult{e, id, err} // capacity covers the window
	}()
	return nil
}

// marked sends PUBREL once "rec" is stored.
func (s *conn) marked(m markResult) error {
	// A message evicted from the queue after PUBREC: the upstream has it,
	// so PUBREL still goes out; only the restart record is missing.
	if m.err != nil && !errors.Is(m.err, ErrGone) {
		m.e.mark = markUnknown
		return fmt.Errorf("queue mark of seq %d: %w", m.e.Seq, m.err)
	}
	m.e.rec = true
	m.e.mark = string(markData(markRec, m.id))
	// PUBRELs go out in PUBREC order (queue order), whatever order the
	// marks completed in: the server may deliver a QoS 2 message only at
	// PUBREL, so this keeps queue order downstream.
	for len(s.relQ) > 0 {
		e := s.relQ[0]
		if e.state == stMarking && !e.done && !e.rec {
			break
		}
		s.relQ[0] = nil
		s.relQ = s.relQ[1:]
		if e.state != stMarking || e.done {
			continue
		}
		e.state = stReleased
		s.released(e)
		if err := s.write(&packet.Pubrel{PacketID: e.id}); err != nil {
			return err
		}
	}
	return nil
}

// refusal handles a negative PUBACK/PUBREC. The flow has ended.
func (s *conn) refusal(e *entry, code packet.ReasonCode, pr *packet.Properties) error {
	c := s.c
	c.update(func(st *Status) { st.Refused++ })
	reason := fmt.Sprintf("upstream refused: %s (0x%02X)", code, byte(code))
	if pr.HasReasonString {
		reason += ": " + pr.ReasonString
	}
	c.setError(errors.New(reason))
	// The message is no longer in the server's session. It keeps its id
	// (its mark may name it) unless the server says the id is in use.
	s.released(e)
	e.sent, e.state = false, stQueued
	e.newID = code == packet.PacketIdentifierInUse
	e.refusals++
	// MQTT 5 allows 0x80, 0x83, 0x87, 0x90, 0x91, 0x97 and 0x99 here (the
	// codec refuses any other as a malformed packet). Server busy (0x89)
	// and shutting down (0x8B) come in CONNACK or DISCONNECT instead, and
	// are waited out like any failed connect or lost connection.
	switch code {
	case packet.NotAuthorized, packet.TopicNameInvalid, packet.PayloadFormatInvalid:
		return s.deadLetter(e, reason)
	case packet.QuotaExceeded, packet.PacketIdentifierInUse:
	default: // 0x80 unspecified error, 0x83 implementation specific error
		if e.refusals >= MaxRefusals {
			return s.deadLetter(e, fmt.Sprintf("%s, %d times", reason, e.refusals))
		}
	}
	c.narrowTo(e)
	d := c.pause.NextBackOff()
	c.pauseGrown = true
	c.pauseUntil = time.Now().Add(d)
	c.log.Warn("upstream refused a message; pausing before sending it again", "seq", e.Seq,
		"reason", code.String(), "pause", d.Round(time.Millisecond))
	s.next = 0
	return nil
}

// incoming handles a downlink PUBLISH.
func (s *conn) incoming(p *packet.Publish) error {
	c := s.c
	if p.Properties.HasTopicAlias {
		// We announce no Topic Alias Maximum, so the server may not use one.
		return packet.Errorf(packet.TopicAliasInvalid, "server used topic alias %d; none was allowed", p.Properties.TopicAlias)
	}
	if p.QoS == 2 {
		id := p.PacketID
		if c.restored[id] {
			delete(c.restored, id)
			if p.Dup {
				c.rx[id] = true // delivered before the restart
			} // else a first transmission: the mark is stale
		}
		if c.rx[id] {
			// Delivered before; the server did not see our PUBREC.
			return s.write(&packet.Pubrec{PacketID: id})
		}
		delete(c.unmark, id) // its delivery writes the mark anew
	}
	if c.down == nil {
		// No subscriptions of ours (a server-side subscription): ack.
		return s.ackDownlink(p)
	}
	if p.QoS == 0 {
		if s.dlQoS0 >= MaxDownlinkQoS0Backlog {
			c.update(func(st *Status) { st.DownlinkDropped++ })
			return nil
		}
		s.dlQoS0++
	}
	if p.QoS == 2 {
		// A resend of one the worker is delivering, or of one still
		// waiting: its PUBREC goes out when that delivery is done.
		if q := s.dlCur; q != nil && q.QoS == 2 && q.PacketID == p.PacketID {
			return nil
		}
		for _, q := range s.dlQueue {
			if q.QoS == 2 && q.PacketID == p.PacketID {
				return nil
			}
		}
	}
	s.dlQueue = append(s.dlQueue, p)
	return nil
}

// forgetDownlinkIDs drops the downlink QoS 2 packet ids of a session the
// server no longer has: it will not send PUBREL for them, and it may use
// the ids for new messages. They are forgotten in memory at once; their
// marks are removed by removeForgottenMarks.
func (c *Client) forgetDownlinkIDs() {
	if _, ok := c.down.(MarkedDownlink); ok {
		if c.unmark == nil {
			c.unmark = make(map[uint16]bool)
		}
		for id := range c.rx {
			c.unmark[id] = true
		}
		for id := range c.restored {
			c.unmark[id] = true
		}
	}
	clear(c.rx)
	clear(c.restored)
}

// removeForgottenMarks removes the marks of forgotten ids from the store.
// A failure is logged and retried at the next connect: forgotten ids are
// no longer duplicates, and a mark a crash leaves behind is restored under
// the DUP rule.
func (c *Client) removeForgottenMarks() {
	md, ok := c.down.(MarkedDownlink)
	if !ok || len(c.unmark) == 0 {
		return
	}
	ids := make([]uint16, 0, len(c.unmark))
	for id := range c.unmark {
		ids = append(ids, id)
	}
	if err := md.Unmark(ids...); err != nil {
		c.log.Warn("removing downlink marks failed; retrying at the next connect", "ids", len(ids), "err", err)
		return
	}
	clear(c.unmark)
}

// feedDownlink hands the next downlink message to the worker when idle.
func (s *conn) feedDownlink() {
	if s.dlCur != nil || len(s.dlQueue) == 0 || s.draining {
		return
	}
	p := s.dlQueue[0]
	s.dlQueue[0] = nil
	s.dlQueue = s.dlQueue[1:]
	if p.QoS == 0 {
		s.dlQoS0--
	}
	s.dlCur = p
	s.dlCh <- p
}

// delivered acks a downlink message the Downlink has stored.
func (s *conn) delivered(p *packet.Publish) error {
	s.dlCur = nil
	s.c.update(func(st *Status) { st.Delivered++ })
	return s.ackDownlink(p)
}

func (s *conn) ackDownlink(p *packet.Publish) error {
	switch p.QoS {
	case 1:
		return s.write(&packet.Puback{PacketID: p.PacketID})
	case 2:
		s.c.rx[p.PacketID] = true
		return s.write(&packet.Pubrec{PacketID: p.PacketID})
	}
	return nil
}

// downlinkWorker calls Deliver for one message at a time, retrying with
// backoff while it fails: a failed message is never acknowledged upstream.
func (s *conn) downlinkWorker() {
	defer s.wg.Done()
	c := s.c
	for {
		var p *packet.Publish
		select {
		case p = <-s.dlCh:
		case <-s.ctx.Done():
			return
		}
		m := &Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain}
		pr := &p.Properties
		if pr.HasPayloadFormat {
			m.PayloadFormat = pr.PayloadFormat
		}
		if pr.HasMessageExpiry {
			m.Expires = time.Now().Add(time.Duration(pr.MessageExpiry) * time.Second)
		}
		if pr.HasContentType {
			m.ContentType = pr.ContentType
		}
		if pr.HasResponseTopic {
			m.ResponseTopic = pr.ResponseTopic
		}
		if pr.HasCorrelationData {
			m.CorrelationData = pr.CorrelationData
		}
		m.UserProperties = pr.UserProperties
		md, marked := c.down.(MarkedDownlink)
		marked = marked && p.QoS == 2
		delay := 100 * time.Millisecond
		for {
			var err error
			if marked {
				// Not cancelled midway: a message stored with its mark
				// after the caller gave up would be delivered again.
				err = md.DeliverMarked(context.WithoutCancel(s.ctx), m, p.PacketID)
			} else {
				err = c.down.Deliver(s.ctx, m)
			}
			if err == nil {
				break
			}
			if s.ctx.Err() != nil {
				return
			}
			c.warnOnce("deliver:"+err.Error(), "downlink delivery failed; retrying (not acknowledged upstream)",
				"topic", m.Topic, "err", err)
			c.setError(fmt.Errorf("downlink delivery: %w", err))
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return
			}
			delay = min(delay*2, 30*time.Second)
		}
		// dlDone has room: the loop hands out one message at a time.
		s.dlDone <- p
	}
}

// teardown stops the connection's goroutines and keeps what they finished.
func (s *conn) teardown() {
	c := s.c
	s.cancel()
	if s.holdT != nil {
		s.holdT.Stop()
	}
	if s.pkts == nil { // the loop never started
		return
	}
	s.wg.Wait()
	select {
	case lr := <-s.leaseCh:
		s.leased(lr)
	default:
	}
	for {
		select {
		case m := <-s.marks:
			switch {
			case m.err == nil:
				m.e.rec = true
				m.e.mark = string(markData(markRec, m.id))
			case !errors.Is(m.err, ErrGone):
				m.e.mark = markUnknown
			}
			continue
		case p := <-s.dlDone:
			if p.QoS == 2 {
				c.rx[p.PacketID] = true // delivered: only PUBREC is owed
			}
			continue
		default:
		}
		break
	}
	for id := range s.ctrl {
		c.ids.del(id)
	}
	for _, e := range c.pending {
		if e.waitCtrl && !e.done { // its id is free now
			e.waitCtrl = false
			c.takeID(e, e.id)
		}
		e.unrel = false
		if !e.done {
			e.state = stQueued
		}
	}
	c.update(func(st *Status) { st.InFlight = 0 })
}

// aliasCache assigns topic aliases, replacing the least recently used one
// when all are taken.
type aliasCache struct {
	max uint16
	m   map[string]*list.Element
	l   *list.List // front: most recently used
}

type aliasEntry struct {
	topic string
	alias uint16
}

func newAliasCache(max uint16) *aliasCache {
	return &aliasCache{max: max, m: make(map[string]*list.Element), l: list.New()}
}

// lookup returns the alias of topic and true, or the alias topic would get
// and false.
func (a *aliasCache) lookup(topic string) (uint16, bool) {
	if el, ok := a.m[topic]; ok {
		a.l.MoveToFront(el)
		return el.Value.(*aliasEntry).alias, true
	}
	if a.l.Len() < int(a.max) {
		return uint16(a.l.Len() + 1), false
	}
	return a.l.Back().Value.(*aliasEntry).alias, false
}

// assign maps topic to alias (as lookup proposed it).
func (a *aliasCache) assign(topic string, alias uint16) {
	if a.l.Len() >= int(a.max) {
		old := a.l.Back()
		delete(a.m, old.Value.(*aliasEntry).topic)
		a.l.Remove(old)
	}
	a.m[topic] = a.l.PushFront(&aliasEntry{topic, alias})
}
