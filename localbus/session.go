package localbus

import (
	"math"
	"slices"
	"sort"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/topic"
)

// subscription is one subscription of a session.
type subscription struct {
	packet.Subscription
	id uint32 // subscription identifier, 0 if none
}

// outMsg is a message held for one session: waiting, or in flight.
type outMsg struct {
	s      *session
	seq    uint64
	m      *stored
	qos    byte
	retain bool
	subIDs []uint32

	ready     bool // durable (or needs no storing): may be sent
	dead      bool // its store write failed: skip it
	persisted bool // stored under queuedKey(s.cid, seq)
	pid       uint16
	pubrec    bool      // QoS 2: PUBREC received, PUBREL sent
	local     *localSub // set for an in-process subscriber's copy instead of s
}

// will is a connection's will message and delay.
type will struct {
	m     *Message
	delay time.Duration
}

// session is the state MQTT keeps for one client id.
type session struct {
	cid        string
	version    packet.Version
	persistent bool   // stored: expiry interval > 0 at connect
	expiry     uint32 // session expiry interval in seconds; MaxUint32: never
	subs       map[string]*subscription

	conn     *conn     // nil while offline
	queue    []*outMsg // not yet sent, in order
	inflight []*outMsg // sent and not yet acknowledged, in send order
	pids     map[uint16]*outMsg
	nextPID  uint16
	inbound  map[uint16]bool // QoS 2 packet ids awaiting PUBREL (true: stored)
	// inPending holds the inbound QoS 2 messages handed to the store and
	// not yet durable, by packet id: a resend of one, on this connection or
	// the next, is answered only when the original's write is done.
	inPending map[uint16]*inPending

	// peakInflight is the most messages inflight has held at once: the
	// window the broker actually used, which tests of the client's
	// Receive Maximum read.
	peakInflight int

	// Deliveries (PUBLISH and PUBREL to the client) wait, in order, until
	// the saves of the QoS 2 state they depend on are durable. The count is
	// the session's, so a new connection's resends wait for the saves its
	// predecessor started.
	held      []heldPacket
	saves     uint64          // delivery-state saves started
	savedUpTo uint64          // every save up to this one is done
	savedOut  map[uint64]bool // done out of order, above savedUpTo
	stateLost bool            // a delivery-state save failed: resend saves it again

	expiryTimer timer
	willTimer   timer
	pendingWill *will // published when willTimer fires or the session ends
	ended       bool
}

func newSession(cid string) *session {
	return &session{
		cid:     cid,
		subs:    make(map[string]*subscription),
		pids:    make(map[uint16]*outMsg),
		inbound: make(map[uint16]bool),

		inPending: make(map[uint16]*inPending),
	}
}

// heldPacket is a delivery to connection c waiting for the save numbered
// after; o is the message a PUBLISH delivers.
type heldPacket struct {
	c     *conn
	p     packet.Packet
	o     *outMsg
	after uint64
}

// deliver sends a PUBLISH of o or a PUBREL to c once the delivery-state save
// numbered after (0: none) is done and every delivery before it has gone.
// Called with b.mu held.
func (s *session) deliver(c *conn, p packet.Packet, o *outMsg, after uint64) {
	if after <= s.savedUpTo && len(s.held) == 0 {
		c.sendFor(p, o)
		return
	}
	s.held = append(s.held, heldPacket{c: c, p: p, o: o, after: after})
}

// saveDelivery saves ops that deliveries about to be made depend on and
// returns the number to pass to deliver. Called with b.mu held. While the
// broker closes, the save is not made and what waits for it is never sent:
// the connections are closing too.
func (s *session) saveDelivery(b *Broker, ops []StateOp) uint64 {
	s.saves++
	n := s.saves
	b.save(ops, func(err error) { s.saved(b, n, err) })
	return n
}

// saved records that save n is done and sends the deliveries it released
// to the connection they were made for, if it is still the session's. A
// failed save closes the connection instead: the client gets the packets
// again when it reconnects, and the state is saved again as it changes.
func (s *session) saved(b *Broker, n uint64, err error) {
	if s.savedOut == nil {
		s.savedOut = make(map[uint64]bool)
	}
	s.savedOut[n] = true
	for s.savedOut[s.savedUpTo+1] {
		delete(s.savedOut, s.savedUpTo+1)
		s.savedUpTo++
	}
	if err != nil {
		s.stateLost = true
		if s.conn != nil {
			b.log.Warn("delivery state not stored; closing the connection", "client_id", s.cid, "err", err)
			s.conn.closeWith(packet.UnspecifiedError)
		}
	}
	i := 0
	for ; i < len(s.held) && s.held[i].after <= s.savedUpTo; i++ {
		if h := s.held[i]; h.c == s.conn && !h.c.closed {
			h.c.sendFor(h.p, h.o)
		}
		s.held[i] = heldPacket{}
	}
	s.held = s.held[i:]
}

// inPending is an inbound QoS 2 message whose store write is in flight.
type inPending struct {
	c       *conn // the connection it arrived on
	waiters []inWaiter
}

// inWaiter is the answer to a resend, made when the original is durable.
type inWaiter struct {
	c *conn
	e *ackEntry
}

// subOrder returns the session's filters sorted, for stable records.
func (s *session) subOrder() []string {
	fs := make([]string, 0, len(s.subs))
	for f := range s.subs {
		fs = append(fs, f)
	}
	sort.Strings(fs)
	return fs
}

func (s *session) stopTimers() {
	if s.expiryTimer != nil {
		s.expiryTimer.Stop()
		s.expiryTimer = nil
	}
	if s.willTimer != nil {
		s.willTimer.Stop()
		s.willTimer = nil
	}
}

// allocPID returns a packet id not in use by the session's in-flight messages.
func (s *session) allocPID() uint16 {
	for {
		s.nextPID++
		if s.nextPID == 0 {
			s.nextPID = 1
		}
		if s.pids[s.nextPID] == nil {
			return s.nextPID
		}
	}
}

// route finds every subscriber of m and queues a copy (not yet ready) for
// each matching session. It appends to ops the records for the copies held
// by persistent sessions (QoS 1/2) and returns the copies; b.complete makes
// them ready or drops them once the store answered.
func (b *Broker) route(m *stored, ops []StateOp, now time.Time) ([]*outMsg, []StateOp) {
	type target struct {
		qos    byte
		retain bool
		subIDs []uint32
	}
	targets := make(map[string]*target)
	var groups map[string][]string
	add := func(cid string, sub *subscription) {
		t := targets[cid]
		if t == nil {
			t = &target{}
			targets[cid] = t
		}
		q := min(sub.QoS, m.QoS)
		t.qos = max(t.qos, q)
		if sub.RetainAsPublished && m.Retain {
			t.retain = true
		}
		if sub.id != 0 {
			t.subIDs = append(t.subIDs, sub.id)
		}
	}
	var subOf map[[2]string]*subscription
	b.subs.Match(m.Topic, func(filter, cid string, sub *subscription) {
		if _, _, shared, err := topic.ParseShared(filter); shared && err == nil {
			if groups == nil {
				groups = make(map[string][]string)
				subOf = make(map[[2]string]*subscription)
			}
			groups[filter] = append(groups[filter], cid)
			subOf[[2]string{filter, cid}] = sub
			return
		}
		if sub.NoLocal && cid == m.ClientID && m.ClientID != "" {
			return
		}
		add(cid, sub)
	})
	for filter, members := range groups {
		sort.Strings(members)
		online := members[:0:0]
		for _, cid := range members {
			if s := b.sessions[cid]; s != nil && s.conn != nil {
				online = append(online, cid)
			}
		}
		pick := members
		if len(online) > 0 {
			pick = online
		}
		n := b.shareNext[filter]
		b.shareNext[filter] = n + 1
		if n+1 >= math.MaxInt32 {
			b.shareNext[filter] = 0
		}
		cid := pick[n%len(pick)]
		add(cid, subOf[[2]string{filter, cid}])
	}
	var out []*outMsg
	cids := make([]string, 0, len(targets))
	for cid := range targets {
		cids = append(cids, cid)
	}
	sort.Strings(cids)
	for _, cid := range cids {
		s := b.sessions[cid]
		if s == nil {
			continue
		}
		t := targets[cid]
		o := &outMsg{s: s, m: m, qos: t.qos, retain: t.retain, subIDs: t.subIDs}
		var ok bool
		ops, ok = b.enqueue(s, o, ops)
		if ok {
			out = append(out, o)
		}
	}
	for _, l := range b.locals {
		if topic.Match(l.filter, m.Topic) {
			// In-process subscribers get it in complete; record them as
			// targets without a session.
			out = append(out, &outMsg{m: m, qos: m.QoS, retain: m.Retain, local: l})
		}
	}
	return out, ops
}

// queueLimit is the most messages waiting for one online session.
func (b *Broker) queueLimit() int {
	if b.opts.MaxQueuedMessages < 0 {
		return DefaultMaxQueuedMessages
	}
	return b.opts.MaxQueuedMessages
}

// enqueue appends o to s's queue, dropping the oldest waiting message when
// the queue is full, and appends the store records that takes.
func (b *Broker) enqueue(s *session, o *outMsg, ops []StateOp) ([]StateOp, bool) {
	if s.conn == nil && o.qos == 0 {
		b.stats.dropOffline.Add(1)
		return ops, false
	}
	if b.opts.MaxQueuedMessages < 0 && s.conn == nil {
		b.stats.dropFull.Add(1)
		return ops, false
	}
	limit := b.queueLimit()
	for len(s.queue) >= limit && len(s.queue) > 0 {
		old := s.queue[0]
		s.queue = s.queue[1:]
		old.dead = true
		if old.persisted {
			ops = append(ops, StateOp{Key: queuedKey(s.cid, old.seq)})
		}
		b.stats.dropFull.Add(1)
	}
	b.seq++
	o.seq = b.seq
	if s.persistent && o.qos > 0 {
		o.persisted = true
		ops = append(ops, StateOp{Key: queuedKey(s.cid, o.seq), Value: encodeQueued(o)})
	}
	s.queue = append(s.queue, o)
	return ops, true
}

// complete runs when the store has answered for m (err nil: durable): the
// copies become ready and are sent, the retained message is updated and
// in-process subscribers are called; on failure the copies are dropped.
func (b *Broker) complete(m *stored, targets []*outMsg, err error) {
	now := b.now()
	if err == nil && m.Retain {
		if len(m.Payload) == 0 {
			delete(b.retained, m.Topic)
		} else {
			b.retained[m.Topic] = m
		}
	}
	var touched []*session
	for _, o := range targets {
		if o.local != nil {
			if err == nil && !m.expired(now) {
				o.local.deliver(m.public(now))
			}
			continue
		}
		if err == nil {
			o.ready = true
		} else {
			o.dead = true
		}
		if !slices.Contains(touched, o.s) {
			touched = append(touched, o.s)
		}
	}
	for _, s := range touched {
		b.pump(s)
	}
}

// pump sends what s's connection may receive now: waiting messages in
// order, as long as they are ready and the client's Receive Maximum allows.
//
// A QoS 2 PUBLISH to a persistent session goes out only once its packet id
// is on disk, and everything after it waits as well, so that a restarted
// broker resends it with the same id (DUP) and never as a new message.
func (b *Broker) pump(s *session) {
	var ops []StateOp
	var gated []outPacket // sent after ops are saved
	var gc *conn
	defer func() {
		switch {
		case gc != nil:
			after := s.saveDelivery(b, ops)
			for _, g := range gated {
				s.deliver(gc, g.p, g.o, after)
			}
		case len(ops) > 0:
			b.save(ops, nil)
		}
	}()
	// Drop dead and expired messages at the head even while offline.
	now := b.now()
	for len(s.queue) > 0 {
		o := s.queue[0]
		if o.dead {
			s.queue = s.queue[1:]
			continue
		}
		if o.ready && o.m.expired(now) {
			s.queue = s.queue[1:]
			b.stats.dropExpired.Add(1)
			if o.persisted {
				ops = append(ops, StateOp{Key: queuedKey(s.cid, o.seq)})
			}
			continue
		}
		break
	}
	c := s.conn
	if c == nil || s.ended || c.closed {
		return
	}
	for len(s.queue) > 0 {
		o := s.queue[0]
		if o.dead {
			s.queue = s.queue[1:]
			continue
		}
		if !o.ready {
			return
		}
		if o.qos > 0 && len(s.inflight) >= c.sendMax {
			return
		}
		s.queue = s.queue[1:]
		drop := func(counter interface{ Add(uint64) uint64 }) {
			counter.Add(1)
			if o.persisted {
				ops = append(ops, StateOp{Key: queuedKey(s.cid, o.seq)})
			}
		}
		if o.m.expired(now) {
			drop(&b.stats.dropExpired)
			continue
		}
		if !c.lo.ACL.CanReceive(c.username, s.cid, o.m.Topic) {
			drop(&b.stats.dropDenied)
			continue
		}
		if o.qos == 0 && c.unwritten.Load()+int64(len(s.held)) >= int64(b.queueLimit()) {
			// A client that reads slower than QoS 0 arrives: its socket
			// is full and the packets pile up here; the limit that holds
			// for its queue holds for them too.
			drop(&b.stats.dropFull)
			continue
		}
		if o.qos > 0 {
			o.pid = s.allocPID()
		}
		p := c.publishPacket(o, false, now)
		commitAlias := c.applyAlias(p)
		if c.maxOut > 0 {
			// Measured only for a client that set a limit: the writer
			// refuses what cannot be encoded anyway (conn.unencodable).
			n, err := packet.Size(p, c.version)
			if err != nil || uint32(n) > c.maxOut {
				// Too large for the client (5.0 section 3.1.2.11.4): discard it
				// as if it had been sent.
				o.pid = 0
				if err != nil {
					drop(&b.stats.dropInvalid)
				} else {
					drop(&b.stats.dropLarge)
				}
				continue
			}
		}
		if o.qos > 0 {
			s.inflight = append(s.inflight, o)
			s.peakInflight = max(s.peakInflight, len(s.inflight))
			s.pids[o.pid] = o
			if o.persisted && o.qos == 2 {
				ops = append(ops, StateOp{Key: queuedKey(s.cid, o.seq), Value: encodeQueued(o)})
				gc = c
			}
		}
		commitAlias()
		b.stats.out.Add(1)
		if gc != nil {
			gated = append(gated, outPacket{p: p, o: o})
		} else {
			s.deliver(c, p, o, 0)
		}
	}
}

// resend sends s's in-flight messages again on a new connection (DUP set, or
// PUBREL for those whose PUBREC came), as MQTT-4.4.0-1 requires.
//
// What the previous connection still held is dropped: these resends cover
// it, and they wait for every delivery-state save already started.
func (b *Broker) resend(s *session) {
	c := s.conn
	now := b.now()
	s.held = slices.DeleteFunc(s.held, func(h heldPacket) bool { return h.c != c })
	if s.stateLost {
		// A save failed before: store the in-flight state again before
		// acting on it.
		s.stateLost = false
		var ops []StateOp
		for _, o := range s.inflight {
			if o.persisted {
				ops = append(ops, StateOp{Key: queuedKey(s.cid, o.seq), Value: encodeQueued(o)})
			}
		}
		if len(ops) > 0 {
			s.saveDelivery(b, ops)
		}
	}
	for _, o := range s.inflight {
		if o.pubrec {
			s.deliver(c, &packet.Pubrel{PacketID: o.pid}, nil, s.saves)
			continue
		}
		p := c.publishPacket(o, true, now)
		c.applyAlias(p)()
		s.deliver(c, p, o, s.saves)
	}
}

// acked removes an in-flight message once its flow is complete.
func (b *Broker) acked(s *session, o *outMsg) {
	delete(s.pids, o.pid)
	if i := slices.Index(s.inflight, o); i >= 0 {
		s.inflight = slices.Delete(s.inflight, i, i+1)
	}
	if o.persisted {
		b.save([]StateOp{{Key: queuedKey(s.cid, o.seq)}}, nil)
	}
	b.pump(s)
}

// sessionExpiry returns the expiry interval as a duration (ok false: never).
func (s *session) expiryDuration() (time.Duration, bool) {
	if s.expiry == math.MaxUint32 {
		return 0, false
	}
	return time.Duration(s.expiry) * time.Second, true
}

// startExpiry arms the timer that ends an offline session.
func (b *Broker) startExpiry(s *session) {
	d, ok := s.expiryDuration()
	if !ok {
		return
	}
	if s.expiryTimer != nil {
		s.expiryTimer.Stop()
	}
	var t timer
	t = b.afterFunc(d, func() {
		b.post(func() {
			if s.expiryTimer != t || s.conn != nil || s.ended || b.closing {
				return
			}
			b.log.Debug("session expired", "client_id", s.cid)
			b.endSession(s)
		})
	})
	s.expiryTimer = t
}

// endSession discards s: subscriptions, waiting messages and stored records.
// A will waiting for its delay is published now.
func (b *Broker) endSession(s *session) {
	if s.ended {
		return
	}
	s.ended = true
	s.stopTimers()
	if b.sessions[s.cid] == s {
		delete(b.sessions, s.cid)
	}
	for f := range s.subs {
		b.subs.Remove(f, s.cid)
	}
	if w := s.pendingWill; w != nil {
		s.pendingWill = nil
		b.publishWill(w.m)
	}
	if !s.persistent {
		return
	}
	ops := []StateOp{{Key: sessionKey(s.cid)}}
	for _, o := range append(slices.Clone(s.queue), s.inflight...) {
		o.dead = true
		if o.persisted {
			ops = append(ops, StateOp{Key: queuedKey(s.cid, o.seq)})
		}
	}
	for id, st := range s.inbound {
		if st {
			ops = append(ops, StateOp{Key: inboundKey(s.cid, id)})
		}
	}
	s.queue, s.inflight = nil, nil
	b.save(ops, nil)
}

// saveSession stores a persistent session's record (subscriptions) plus
// extra ops; then runs when durable.
func (b *Broker) saveSession(s *session, extra []StateOp, then func(error)) bool {
	var ops []StateOp
	if s.persistent {
		ops = append(ops, StateOp{Key: sessionKey(s.cid), Value: encodeSession(s)})
	}
	ops = append(ops, extra...)
	return b.save(ops, then)
}

// publishWill publishes a will message as the client's publish: through
// Store.Ingest, then to subscribers.
func (b *Broker) publishWill(m *Message) {
	if b.closing {
		return
	}
	now := b.now()
	b.ingest(newStored(m, now), nil, now, nil)
}

// ingest routes m, hands it with ops to Store.Ingest, and on completion makes
// the copies ready (or drops them) and calls then. Must be called with b.mu
// held; then runs under b.mu on the event goroutine.
func (b *Broker) ingest(m *stored, ops []StateOp, now time.Time, then func(error)) bool {
	if b.closing {
		return false
	}
	if m.Retain {
		ops = append(ops, retainOp(m))
	}
	targets, ops := b.route(m, ops, now)
	pm := m.public(now)
	b.storeCalls.Add(1)
	b.stats.in.Add(1)
	b.store.Ingest(pm, ops, func(err error) {
		b.post(func() {
			defer b.storeCalls.Done()
			if err != nil {
				b.stats.refused.Add(1)
			}
			b.complete(m, targets, err)
			if then != nil {
				then(err)
			}
		})
	})
	return true
}
