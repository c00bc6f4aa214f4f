package agent

import (
	"errors"
	"time"

	"holdfast/queue"
)

// QueueRecord is one queued message as `holdfast queue peek|export` and
// /api/queue/peek show it, one JSON object per line (the payload and
// correlation data as base64, encoding/json's form of []byte).
type QueueRecord struct {
	Seq             uint64               `json:"seq"`
	Topic           string               `json:"topic"`
	QoS             byte                 `json:"qos"`
	Retain          bool                 `json:"retain,omitempty"`
	Payload         []byte               `json:"payload"`
	PayloadFormat   byte                 `json:"payload_format,omitempty"`
	ContentType     string               `json:"content_type,omitempty"`
	ResponseTopic   string               `json:"response_topic,omitempty"`
	CorrelationData []byte               `json:"correlation_data,omitempty"`
	UserProperties  []queue.UserProperty `json:"user_properties,omitempty"`
	ExpirySeconds   float64              `json:"expiry_seconds,omitempty"`
	ReceivedAt      time.Time            `json:"received_at"`
	Source          string               `json:"source,omitempty"`
	// Expired marks a record past its MQTT expiry or queue.ttl: the
	// agent drops it at the head (counted) instead of sending it.
	Expired bool `json:"expired,omitempty"`
	// Corrupt is why a record cannot be decoded (its other fields are
	// then empty); the agent drops it at the head (counted).
	Corrupt string `json:"corrupt,omitempty"`
	// DeadLetter is why the uplink gave up on a message of the
	// dead-letter store, and DeadLetterAt when.
	DeadLetter   string    `json:"dead_letter_reason,omitempty"`
	DeadLetterAt time.Time `json:"dead_lettered_at,omitzero"`
}

// RecordOf returns the record that shows m, stored under seq.
func RecordOf(seq uint64, m *queue.Message) QueueRecord {
	return QueueRecord{
		Seq: seq, Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Payload: m.Payload,
		PayloadFormat: m.PayloadFormat, ContentType: m.ContentType, ResponseTopic: m.ResponseTopic,
		CorrelationData: m.CorrelationData, UserProperties: m.UserProperties,
		ExpirySeconds: m.Expiry.Seconds(), ReceivedAt: m.ReceivedAt, Source: m.Source,
	}
}

// ScannedRecord returns the record that shows s, expired or corrupt.
func ScannedRecord(s *queue.Scanned) QueueRecord {
	if s.Corrupt != nil {
		return QueueRecord{Seq: s.Seq, Corrupt: s.Corrupt.Error()}
	}
	r := RecordOf(s.Seq, &s.Message)
	r.Expired = s.Expired
	return r
}

// errEnough stops a scan that has shown as many records as asked.
var errEnough = errors.New("enough records")

// ScanQueue calls fn with up to n records (all when n < 0) from the head of
// q, in order, leased or not, expired and corrupt ones included and
// flagged. It changes nothing in the queue.
func ScanQueue(q *queue.Queue, n int, fn func(QueueRecord) error) error {
	if n == 0 {
		return nil
	}
	seen := 0
	err := q.Scan(func(s queue.Scanned) error {
		if err := fn(ScannedRecord(&s)); err != nil {
			return err
		}
		if seen++; n > 0 && seen >= n {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		return nil
	}
	return err
}

// Peek implements admin.Peeker: up to n records from the head of the
// running agent's queue, read without leasing or dropping anything.
func (a *Agent) Peek(n int, fn func(record any) error) error {
	return ScanQueue(a.q, n, func(r QueueRecord) error { return fn(r) })
}
