package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"holdfast/agent"
	"holdfast/queue"
)

// exportRecord is one line of `holdfast queue peek|export`: JSON, the payload
// as base64 (encoding/json's []byte form).
type exportRecord struct {
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
	DeadLetter      string               `json:"dead_letter_reason,omitempty"`
	DeadLetterAt    time.Time            `json:"dead_lettered_at,omitzero"`
}

func toExport(seq uint64, m *queue.Message) exportRecord {
	return exportRecord{
		Seq: seq, Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Payload: m.Payload,
		PayloadFormat: m.PayloadFormat, ContentType: m.ContentType, ResponseTopic: m.ResponseTopic,
		CorrelationData: m.CorrelationData, UserProperties: m.UserProperties,
		ExpirySeconds: m.Expiry.Seconds(), ReceivedAt: m.ReceivedAt, Source: m.Source,
	}
}

func runQueue(args []string, stdout io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usagef("queue: want stats, peek or export")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("queue "+sub, flag.ContinueOnError)
	var cf commonFlags
	cf.register(fs, false)
	fs.StringVar(&cf.overrides.DataDir, "data-dir", "", "queue directory (default: from the configuration)")
	adminFlag := fs.String("admin", "", "admin endpoint of a running agent (for stats)")
	n := fs.Int("n", 10, "peek: how many messages from the head")
	dead := fs.Bool("dead-letters", false, "export: the dead-letter store instead of the queue")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch sub {
	case "stats", "peek", "export":
	default:
		return usagef("queue: unknown subcommand %q (want stats, peek or export)", sub)
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	opts := queue.Options{Dir: cfg.Queue.Dir, Logger: slog.New(slog.DiscardHandler)}
	q, err := queue.Open(opts)
	if err != nil {
		if sub == "stats" && strings.Contains(err.Error(), "lock") {
			// The agent is running and holds the queue: ask it.
			addr, aerr := adminAddress(*adminFlag, &cf)
			if aerr != nil {
				return fmt.Errorf("%w (and the admin endpoint cannot be asked: %v)", err, aerr)
			}
			body, ferr := fetchStatus(addr)
			if ferr != nil {
				return ferr
			}
			var st agent.Status
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("status from %s: %w", addr, err)
			}
			b := st.Backlog
			fmt.Fprintf(stdout, "messages: %d\nbytes: %d\noldest_age: %s\ndead_letters: %d\n",
				b.Messages, b.Bytes, roundDuration(b.OldestAgeSeconds), b.DeadLetters)
			return nil
		}
		if strings.Contains(err.Error(), "lock") {
			return fmt.Errorf("%w: stop holdfast first to %s the queue", err, sub)
		}
		return err
	}
	defer q.Close()

	switch sub {
	case "stats":
		s := q.Stats()
		fmt.Fprintf(stdout, "messages: %d\nbytes: %d\noldest_age: %s\ndead_letters: %d\nnext_seq: %d\n",
			s.Messages, s.Bytes, s.OldestAge.Round(time.Second), s.DeadLetters, s.NextSeq)
		return nil
	case "peek":
		return leaseAll(q, *n, stdout)
	default: // export
		if *dead {
			enc := json.NewEncoder(stdout)
			return q.DeadLetters(func(d queue.DeadLetter) error {
				r := toExport(d.Seq, &d.Message)
				r.DeadLetter, r.DeadLetterAt = d.Reason, d.At
				return enc.Encode(r)
			})
		}
		return leaseAll(q, -1, stdout)
	}
}

// leaseAll writes up to limit records (all when limit < 0) from the head as
// JSON lines. Leases are never acked, so the queue is unchanged (records past
// their expiry are dropped at the head, as the agent would).
func leaseAll(q *queue.Queue, limit int, w io.Writer) error {
	enc := json.NewEncoder(w)
	for limit != 0 {
		batch := 1000
		if limit > 0 && limit < batch {
			batch = limit
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		recs, err := q.Lease(ctx, batch)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return nil // nothing more to lease
		}
		if err != nil {
			return err
		}
		for i := range recs {
			if err := enc.Encode(toExport(recs[i].Seq, &recs[i].Message)); err != nil {
				return err
			}
		}
		if limit > 0 {
			limit -= len(recs)
		}
	}
	return nil
}
