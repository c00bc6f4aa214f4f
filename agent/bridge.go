package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"holdfast/config"
	"holdfast/internal/packet"
	"holdfast/internal/topic"
	"holdfast/localbus"
	"holdfast/queue"
	"holdfast/uplink"
)

// store is the local broker's durable storage: the queue's group commit.
type store struct{ a *Agent }

// Ingest applies the forward rules: a message that a rule selects is
// appended to the queue under its upstream topic and QoS, in the same commit
// as the broker's state changes. A message whose upstream topic would be
// invalid (config.ForwardRule.CheckedUpstreamTopic) is not queued but
// counted and logged; its state changes are committed and it is
// acknowledged, so local delivery goes on. Every call goes through the
// queue's commit pipeline, even one with nothing to write, so done calls
// keep call order.
func (s *store) Ingest(m *localbus.Message, ops []localbus.StateOp, done func(error)) {
	a := s.a
	w := queue.Write{State: stateOps(ops)}
	if r := a.forwardRule(m.Topic); r == nil {
		a.localOnly.Add(1)
	} else if up, err := r.CheckedUpstreamTopic(m.Topic, m.ClientID, a.cfg.GatewayID); err != nil {
		// No broker would take it, and sending it anyway gets the uplink
		// disconnected for good. The device did nothing wrong locally: it
		// is acknowledged, and local subscribers get it.
		a.invalidTopic.Add(1)
		a.invalidLog.log(a.log, time.Now(), "not forwarded: invalid upstream topic",
			"client_id", m.ClientID, "topic", m.Topic, "err", err)
	} else {
		w.Messages = []queue.Message{forwardMessage(m, r, up)}
	}
	forwarded := len(w.Messages) > 0
	a.q.CommitAsync(w, func(err error) {
		if errors.Is(err, queue.ErrFull) || errors.Is(err, queue.ErrDiskFull) {
			err = fmt.Errorf("%w: %w", localbus.ErrRefused, err)
		}
		if err == nil && forwarded {
			a.ingested.Add(1)
		}
		done(err)
	})
}

// forwardMessage is the queue message that forwards m under rule r to the
// upstream topic up.
func forwardMessage(m *localbus.Message, r *config.ForwardRule, up string) queue.Message {
	qm := queue.Message{
		Topic:           up,
		Payload:         m.Payload,
		QoS:             byte(r.UpstreamQoS(int(m.QoS))),
		Retain:          m.Retain && r.Retain,
		PayloadFormat:   m.PayloadFormat,
		ContentType:     m.ContentType,
		ResponseTopic:   m.ResponseTopic,
		CorrelationData: m.CorrelationData,
		Expiry:          m.Expiry,
		Source:          m.ClientID,
	}
	if len(m.UserProperties) > 0 {
		qm.UserProperties = make([]queue.UserProperty, len(m.UserProperties))
		for i, p := range m.UserProperties {
			qm.UserProperties[i] = queue.UserProperty{Key: p.Key, Value: p.Value}
		}
	}
	return qm
}

// Save applies the broker's state changes durably.
func (s *store) Save(ops []localbus.StateOp, done func(error)) {
	s.a.q.CommitAsync(queue.Write{State: stateOps(ops)}, done)
}

// Load reads the broker's stored state.
func (s *store) Load(prefix string, fn func(key string, value []byte) error) error {
	return s.a.q.ScanState(prefix, fn)
}

func stateOps(ops []localbus.StateOp) []queue.StateOp {
	if len(ops) == 0 {
		return nil
	}
	out := make([]queue.StateOp, len(ops))
	for i, op := range ops {
		out[i] = queue.StateOp{Key: op.Key, Value: op.Value}
	}
	return out
}

// source is the queue as the uplink sees it.
type source struct{ a *Agent }

func (s *source) Lease(ctx context.Context, max int) ([]uplink.Message, error) {
	recs, err := s.a.q.Lease(ctx, max)
	if err != nil {
		return nil, err
	}
	out := make([]uplink.Message, len(recs))
	for i := range recs {
		r := &recs[i]
		m := uplink.Message{
			Seq:             r.Seq,
			Topic:           r.Topic,
			Payload:         r.Payload,
			QoS:             r.QoS,
			Retain:          r.Retain,
			PayloadFormat:   r.PayloadFormat,
			ContentType:     r.ContentType,
			ResponseTopic:   r.ResponseTopic,
			CorrelationData: r.CorrelationData,
			Mark:            r.Mark,
		}
		if d, ok := r.Deadline(); ok {
			m.Expires = d
		}
		if len(r.UserProperties) > 0 {
			m.UserProperties = make([]packet.UserProperty, len(r.UserProperties))
			for j, p := range r.UserProperties {
				m.UserProperties[j] = packet.UserProperty{Key: p.Key, Value: p.Value}
			}
		}
		out[i] = m
	}
	return out, nil
}

func (s *source) Ack(seqs ...uint64) error {
	err := s.a.q.Ack(seqs...)
	if err == nil {
		s.a.forwarded.Add(uint64(len(seqs)))
	}
	return err
}

func (s *source) Release(seqs ...uint64) { s.a.q.Release(seqs...) }

func (s *source) Mark(ctx context.Context, seq uint64, data []byte) error {
	return gone(s.a.q.Mark(ctx, seq, data))
}

func (s *source) DeadLetter(ctx context.Context, seq uint64, reason string) error {
	return gone(s.a.q.DeadLetter(ctx, seq, reason))
}

// gone tells the uplink that a record it holds was evicted from the queue.
func gone(err error) error {
	if errors.Is(err, queue.ErrNotFound) {
		return fmt.Errorf("%w: %w", uplink.ErrGone, err)
	}
	return err
}

// downlink hands messages from the upstream subscriptions to the local
// broker under the local topic of the first downlink rule that matches. It
// is an uplink.MarkedDownlink: the mark of a QoS 2 message is a state entry
// stored in the same commit as the message.
type downlink struct{ a *Agent }

// downlinkMarkPrefix starts the state keys of the downlink QoS 2 marks,
// followed by the packet id in four hex digits.
const downlinkMarkPrefix = "ul/dl2/"

func (d *downlink) Deliver(ctx context.Context, m *uplink.Message) error {
	return d.deliver(ctx, m, nil)
}

func (d *downlink) DeliverMarked(ctx context.Context, m *uplink.Message, id uint16) error {
	return d.deliver(ctx, m, []localbus.StateOp{{Key: markKey(id), Value: []byte{1}}})
}

func markKey(id uint16) string { return fmt.Sprintf("%s%04x", downlinkMarkPrefix, id) }

func (d *downlink) Marks() ([]uint16, error) {
	var ids []uint16
	var bad []queue.StateOp
	err := d.a.q.ScanState(downlinkMarkPrefix, func(key string, _ []byte) error {
		id, err := strconv.ParseUint(key[len(downlinkMarkPrefix):], 16, 16)
		if err != nil || id == 0 {
			d.a.log.Warn("dropping unreadable downlink mark", "key", key)
			bad = append(bad, queue.StateOp{Key: key})
			return nil
		}
		ids = append(ids, uint16(id))
		return nil
	})
	if len(bad) > 0 {
		d.a.q.CommitAsync(queue.Write{State: bad}, func(error) {})
	}
	return ids, err
}

func (d *downlink) Unmark(ids ...uint16) error {
	ops := make([]queue.StateOp, len(ids))
	for i, id := range ids {
		ops[i] = queue.StateOp{Key: markKey(id)}
	}
	return d.a.q.Commit(context.Background(), queue.Write{State: ops})
}

func (d *downlink) deliver(ctx context.Context, m *uplink.Message, marks []localbus.StateOp) error {
	a := d.a
	for _, r := range a.cfg.Downlink {
		if !topic.Match(r.Subscription(a.cfg.Upstream.ClientID, a.cfg.GatewayID), m.Topic) {
			continue
		}
		lm := &localbus.Message{
			Topic:           r.LocalTopicFor(m.Topic, a.cfg.GatewayID),
			Payload:         m.Payload,
			QoS:             m.QoS,
			Retain:          m.Retain,
			PayloadFormat:   m.PayloadFormat,
			ContentType:     m.ContentType,
			ResponseTopic:   m.ResponseTopic,
			CorrelationData: m.CorrelationData,
			UserProperties:  m.UserProperties,
		}
		if !m.Expires.IsZero() {
			lm.Expiry = time.Until(m.Expires)
			if lm.Expiry <= 0 {
				return nil // expired on the way: nothing to deliver
			}
		}
		return a.broker.PublishWith(ctx, lm, marks)
	}
	a.log.Debug("downlink message matches no rule", "topic", m.Topic)
	return nil
}

// matchFilter reports whether a forward rule's filter selects a local topic.
func matchFilter(filter, name string) bool { return topic.Match(filter, name) }
